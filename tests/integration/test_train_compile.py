"""`model.compile` in the trainer: a compiled 5-step fp32 run on CPU matches eager (torch engine), and a
forward that cannot compile, or recompiles past dynamo's limit, fails naming the model, the switch and the
cause. The DeepSpeed-engine run is in tests/e2e/test_train_deepspeed.py. One shape per compiled forward
(`data.pad_to_max_length`): the three graphs (online forward and backward, target forward) cost about 35 s
of CPU with a cold inductor cache, about 4 s from its on-disk cache; each recompile would add as much."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from train_helpers import flags, write_jsonl

from dllm_jepa_train.build import build_trainer
from dllm_jepa_train.config import load_config
from dllm_jepa_train.engines import CompileError, compile_forward

# LLaDA-like tiny model (no dropout: compiled dropout would draw from inductor's RNG, not eager's),
# gradient checkpointing on (the default), JEPA with its EMA target forward, the L2 anchor's gradient hooks.
STEPS = ["--optim.max_steps", "5", "--data.pad_to_max_length", "true", "--anchor.l2_lambda", "0.5",
         "--jepa.collapse_every", "0"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _run(ckpt: Path, jsonl: Path, out: Path, *extra: str) -> tuple[dict, dict, dict, dict, list[dict]]:
    """(step-1 gradients, initial and final online weights, final EMA, metrics lines) of a 5-step run."""
    tr = build_trainer(load_config(None, flags(ckpt, jsonl, out, *STEPS, *extra)))
    module, grads = tr.engine.module, []
    initial = _weights(module)
    tr.engine.optimizer.register_step_pre_hook(
        lambda *_: grads.append({n: p.grad.clone() for n, p in module.named_parameters()}))
    tr.train()
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return grads[0], initial, _weights(module), tr.target.state_dict(), metrics


def test_compiled_training_matches_eager_in_fp32(tmp_path, tiny_checkpoints):
    from torch._dynamo.utils import counters

    jsonl = write_jsonl(tmp_path / "train.jsonl")
    eager = _run(tiny_checkpoints["llada"], jsonl, tmp_path / "eager")
    graphs = counters["stats"]["unique_graphs"]
    compiled = _run(tiny_checkpoints["llada"], jsonl, tmp_path / "compiled", "--model.compile", "true")
    # Both forwards ran compiled, one graph each (online with checkpointing; EMA target), no recompiles.
    assert counters["stats"]["unique_graphs"] - graphs == 2
    assert "compiled: online forward + EMA target forward" in (tmp_path / "compiled" / "train.log").read_text()
    (grads_e, initial, weights_e, ema_e, metrics_e), (grads_c, _, weights_c, ema_c, metrics_c) = eager, compiled
    assert set(grads_c) == set(grads_e)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-6, msg=name)
    assert [m["step"] for m in metrics_c] == [1, 2, 3, 4, 5]
    for got, want in zip(metrics_c, metrics_e):
        for key in ("loss", "loss_diff", "loss_jepa"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=0), (got["step"], key)
    # Adam amplifies rounding (as in test_micro_batch_4_by_1_equals_2_by_2): compare at a fraction of lr.
    moved = min((weights_e[n] - p).abs().max().item() for n, p in initial.items())
    assert moved > 1e-3  # every parameter moved by far more than the bound below
    for name in weights_e:
        torch.testing.assert_close(weights_c[name], weights_e[name], rtol=0, atol=5e-5, msg=name)
    for name in ema_e:
        torch.testing.assert_close(ema_c[name], ema_e[name], rtol=0, atol=5e-5, msg=name)


def test_a_forward_that_cannot_compile_fails_naming_model_switch_and_cause(tmp_path, tiny_checkpoints):
    jsonl = write_jsonl(tmp_path / "train.jsonl")
    tr = build_trainer(load_config(None, flags(tiny_checkpoints["llada"], jsonl, tmp_path / "run", "--jepa.lambda",
                                               "0", "--model.compile", "true")))
    block = tr.engine.module.backbone.model.encoder.blocks[0]
    eager_forward = block.forward

    def overflow_guard(x, *args):
        # Remote code that branches on tensor values (e.g. T5's fp16 overflow clamp) cannot be one graph.
        x = eager_forward(x, *args)
        if x.abs().max() > 1e4:
            x = x.clamp(-1e4, 1e4)
        return x

    block.forward = overflow_guard
    with pytest.raises(CompileError) as info:
        tr.train()
    message = str(info.value)
    assert message.startswith("model.compile: torch.compile failed on the online forward of LLaDAModelLM "
                              "(gradient checkpointing: llada): Unsupported: ")
    assert "Data-dependent branching" in message and "Set model.compile false" in message
    assert tr.global_step == 0


class _Scale(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_the_recompile_limit_is_an_error_not_an_eager_fallback():
    model = _Scale()
    compile_forward(model, "the online forward", "_Scale (gradient checkpointing: off)")
    with torch._dynamo.config.patch(recompile_limit=1):  # a second shape is one recompile too many
        torch.testing.assert_close(model(torch.ones(2, 3)), torch.full((2, 3), 2.0))
        with pytest.raises(CompileError, match=r"^model.compile: torch.compile failed on the online forward of "
                                               r"_Scale \(gradient checkpointing: off\): FailOnRecompileLimitHit"):
            model(torch.ones(3, 5))
