"""The bucket functions of `lm_eval_diffusion.compiled`: which shapes a compiled forward is padded to."""

from __future__ import annotations

import pytest
import torch

from lm_eval_diffusion.compiled import batch_bucket, default_batch_buckets, evaluation_buckets, length_bucket


def test_length_buckets_are_four_per_octave_capped_at_max_length():
    assert [length_bucket(n) for n in (1, 4, 5, 8, 9, 15, 17, 29, 33)] == [1, 4, 5, 8, 10, 16, 20, 32, 40]
    assert sorted({length_bucket(n) for n in range(65, 129)}) == [80, 96, 112, 128]
    assert all(n <= length_bucket(n) <= 1.25 * n for n in range(1, 5000))
    assert length_bucket(900, max_length=1000) == 1000  # 1024 would pass the model's context
    assert length_bucket(1100, max_length=1000) == 1280  # already too long: not cut, its own bucket
    assert length_bucket(30, buckets=(16, 64)) == 64 and length_bucket(65, buckets=(16, 64)) == 65
    with pytest.raises(ValueError, match="length must be >= 1"):
        length_bucket(0)


def test_batch_buckets_are_powers_of_two_stopping_at_each_batch_size():
    assert default_batch_buckets(8) == (1, 2, 4, 8)
    assert default_batch_buckets(6, 32) == (1, 2, 4, 6, 8, 16, 32)
    assert [batch_bucket(n, (1, 2, 4, 6)) for n in (1, 3, 5, 6, 7)] == [1, 4, 6, 6, 7]
    assert [batch_bucket(n) for n in (1, 3, 5, 9)] == [1, 4, 8, 16]
    with pytest.raises(ValueError, match="max rows"):
        default_batch_buckets(0)


def test_evaluation_buckets_double_under_guidance():
    assert evaluation_buckets(8, 32) == (1, 2, 4, 8, 16, 32)
    assert evaluation_buckets(3, 4, cfg_scale=0.5) == (1, 2, 4, 6, 8)


def test_compile_switches_need_the_dynamo_settings_they_rely_on(monkeypatch):
    """An older torch without recompile_limit / fail_on_recompile_limit_hit gets an error naming the switch
    and the missing setting before anything compiles, not an AttributeError at the first forward."""
    from dllm_jepa_train.engines import compile_forward
    from lm_eval_diffusion import compiled

    compiled.require_compile_support("compile")  # this torch has them
    monkeypatch.setattr(compiled, "DYNAMO_SETTINGS", ("recompile_limit", "no_such_setting"))
    with pytest.raises(RuntimeError, match=r"^compile needs a torch whose dynamo has no_such_setting \(torch 2\.7"):
        compiled.CompiledLogits(lambda ids, mask: ids.float(), honours_padding=False)
    with pytest.raises(RuntimeError, match=r"^model\.compile needs a torch .* turn model\.compile off$"):
        compile_forward(torch.nn.Linear(2, 2), "the online forward", "Linear")
