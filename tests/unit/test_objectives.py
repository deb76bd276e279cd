"""Objective pieces against hand-written references: masking, losses, pooling, collapse stats, collator, data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.nn import functional as F

from dllm_jepa_train.config import DataConfig
from dllm_jepa_train.data import DiffusionCollator, StepPlan, load_examples, tokenize_examples
from dllm_jepa_train.objectives import (
    collapse_stats,
    diffusion_denominator,
    diffusion_loss,
    draw_views,
    forward_mask,
    jepa_loss,
    pool_embeddings,
    row_generator,
)

MASK = 99


def test_forward_mask_touches_only_maskable_positions_at_rate_t():
    ids = torch.arange(4000) % 50
    maskable = torch.zeros(4000, dtype=torch.bool)
    maskable[1000:] = True
    noisy, masked = forward_mask(ids, maskable, 0.3, MASK, torch.Generator().manual_seed(0))
    assert not masked[:1000].any()
    assert torch.equal(noisy[~masked], ids[~masked])
    assert (noisy[masked] == MASK).all()
    assert abs(masked[1000:].float().mean().item() - 0.3) < 0.03


def test_forward_mask_masks_at_least_one_token_even_at_tiny_t():
    ids = torch.arange(10)
    maskable = torch.tensor([False] * 7 + [True] * 3)
    for seed in range(20):
        _, masked = forward_mask(ids, maskable, 1e-9, MASK, torch.Generator().manual_seed(seed))
        assert masked.sum() == 1 and masked[7:].any()
    _, masked = forward_mask(ids, torch.zeros(10, dtype=torch.bool), 0.5, MASK, torch.Generator())
    assert not masked.any()  # nothing maskable: nothing masked, no error


def test_views_are_keyed_by_row_not_by_batch():
    ids = torch.arange(40).view(4, 10)
    maskable = torch.ones(4, 10, dtype=torch.bool)
    gens = lambda rows: [row_generator(7, 0, r) for r in rows]
    whole = draw_views(ids, maskable, gens(range(4)), MASK, (0.2, 0.2), (0.7, 0.7))
    halves = [draw_views(ids[i:i + 2], maskable[i:i + 2], gens(range(i, i + 2)), MASK, (0.2, 0.2), (0.7, 0.7))
              for i in (0, 2)]
    for key in whole:
        assert torch.equal(whole[key], torch.cat([h[key] for h in halves]))
    other_epoch = draw_views(ids, maskable, [row_generator(7, 1, r) for r in range(4)], MASK, (0.2, 0.2), None)
    assert not torch.equal(other_epoch["context_masked"], whole["context_masked"])
    assert "target_ids" not in other_epoch


def test_per_row_t_range_draws_different_rates():
    ids = torch.zeros(64, 400, dtype=torch.long)
    views = draw_views(ids, torch.ones_like(ids, dtype=torch.bool), [row_generator(0, 0, r) for r in range(64)],
                       MASK, (0.1, 0.9), (0.5, 0.5))
    t = views["context_t"]
    assert t.min() >= 0.1 and t.max() <= 0.9 and t.std() > 0.15
    realised = views["context_masked"].float().mean(dim=1)
    assert torch.allclose(realised, t, atol=0.1)
    assert (views["target_t"] == 0.5).all()


def test_masked_mean_loss_is_eq2_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6)
    ids = torch.randint(6, (2, 4))
    masked = torch.tensor([[True, False, True, False], [False, False, False, True]])
    expected = sum(-F.log_softmax(logits[b, i], -1)[ids[b, i]] for b, i in [(0, 0), (0, 2), (1, 3)]) / 3
    t, length = torch.tensor([0.5, 0.25]), torch.tensor([4, 4])
    got = diffusion_loss(logits, ids, masked, t, length, "masked_mean")
    assert torch.allclose(got, expected)
    assert diffusion_denominator(masked, "masked_mean") == 3
    # With the step's denominator (here 6 masked tokens over the step), the micro-batch contributes its share.
    assert torch.allclose(diffusion_loss(logits, ids, masked, t, length, "masked_mean", denominator=6), expected / 2)


def test_row_mean_loss_is_eq2_per_sequence_by_hand():
    torch.manual_seed(2)
    logits = torch.randn(3, 5, 7)
    ids = torch.randint(7, (3, 5))
    masked = torch.tensor([[False, True, False, False, False],  # |M_t| = 1, 2, 3
                           [True, False, False, True, False],
                           [False, True, True, False, True]])
    t, length = torch.tensor([0.3, 0.5, 0.9]), torch.tensor([5, 5, 5])
    ce = lambda b, i: -F.log_softmax(logits[b, i], -1)[ids[b, i]]
    rows = [ce(0, 1), (ce(1, 0) + ce(1, 3)) / 2, (ce(2, 1) + ce(2, 2) + ce(2, 4)) / 3]
    expected = sum(rows) / 3
    got = diffusion_loss(logits, ids, masked, t, length, "row_mean")
    assert torch.allclose(got, expected)
    assert diffusion_denominator(masked, "row_mean") == 3
    # Not the token mean: the one-token row weighs a third here, a sixth there.
    token_mean = (rows[0] + 2 * rows[1] + 3 * rows[2]) / 6
    assert torch.allclose(diffusion_loss(logits, ids, masked, t, length, "masked_mean"), token_mean)
    assert not torch.allclose(got, token_mean)
    # With the step's denominator (here 6 rows over the step), the micro-batch contributes its share.
    assert torch.allclose(diffusion_loss(logits, ids, masked, t, length, "row_mean", denominator=6), expected / 2)


def test_row_mean_row_without_masked_position_adds_zero_and_counts_as_a_row():
    torch.manual_seed(3)
    logits = torch.randn(2, 4, 6)
    ids = torch.randint(6, (2, 4))
    # Row 1 has no masked position (a Dream row from an empty prompt and an empty response has nothing
    # maskable; the collator masks at least one maskable position of every other row).
    masked = torch.tensor([[False, True, True, False], [False, False, False, False]])
    t, length = torch.tensor([0.5, 0.5]), torch.tensor([3, 0])
    ce = lambda b, i: -F.log_softmax(logits[b, i], -1)[ids[b, i]]
    row0 = (ce(0, 1) + ce(0, 2)) / 2
    got = diffusion_loss(logits, ids, masked, t, length, "row_mean")
    assert diffusion_denominator(masked, "row_mean") == 2
    assert torch.allclose(got, row0 / 2)
    assert torch.isfinite(got)


def test_llada_loss_is_ce_over_t_per_answer_length_by_hand():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 7)
    ids = torch.randint(7, (2, 5))
    masked = torch.tensor([[False, True, True, False, False], [False, False, True, True, True]])
    t, length = torch.tensor([0.4, 0.8]), torch.tensor([4, 3])
    ce = lambda b, i: -F.log_softmax(logits[b, i], -1)[ids[b, i]]
    row0 = (ce(0, 1) + ce(0, 2)) / 0.4 / 4
    row1 = (ce(1, 2) + ce(1, 3) + ce(1, 4)) / 0.8 / 3
    got = diffusion_loss(logits, ids, masked, t, length, "llada")
    assert torch.allclose(got, (row0 + row1) / 2)
    assert diffusion_denominator(masked, "llada") == 2


def test_pool_embeddings_means_visible_tokens_then_layernorm_fp32():
    hidden = torch.tensor([[[1.0, 2.0, 3.0], [5.0, 0.0, 1.0], [100.0, 100.0, -100.0]]]).bfloat16()
    keep = torch.tensor([[True, True, False]])
    mean = torch.tensor([[3.0, 1.0, 2.0]])
    expected = (mean - mean.mean()) / torch.sqrt(mean.var(unbiased=False) + 1e-5)
    got = pool_embeddings(hidden, keep)
    assert got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(pool_embeddings(hidden, torch.zeros_like(keep)), torch.zeros(1, 3))


def test_jepa_loss_is_one_minus_cosine():
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    assert torch.allclose(jepa_loss(a, b), torch.tensor([0.0, 1 - 1 / math.sqrt(2), 2.0]))


def test_collapse_stats_on_collapsed_and_orthogonal_embeddings():
    collapsed = collapse_stats(torch.ones(50, 8) * torch.arange(8.0))
    assert collapsed["per_dim_std_mean"] == 0.0
    assert collapsed["effective_rank"] == pytest.approx(1.0)
    assert collapsed["cosine_diversity"] == pytest.approx(0.0, abs=1e-6)
    orthogonal = collapse_stats(torch.eye(8) * 3)
    assert orthogonal["effective_rank"] == pytest.approx(8.0)
    assert orthogonal["cosine_diversity"] == pytest.approx(1.0)
    z = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    assert collapse_stats(z, seed=3) == collapse_stats(z, seed=3)
    assert 10 < collapse_stats(z)["effective_rank"] < 16


# ---------------------------------------------------------------------------------- collator


def _collator(**kw) -> DiffusionCollator:
    base = {"mask_id": MASK, "eos_id": 1, "pad_id": 2, "t_context": (0.5, 0.5), "t_target": (0.9, 0.9),
            "seed": 0, "max_length": 16}
    return DiffusionCollator(**{**base, **kw})


ROWS = [{"prompt_ids": [10, 11, 12], "response_ids": [20, 21, 1], "index": 0, "epoch": 0},
        {"prompt_ids": [13], "response_ids": [22, 23, 24, 25, 26, 1], "index": 1, "epoch": 0}]


def test_collator_keeps_prompt_clean_and_fills_with_maskable_eos():
    batch = _collator()(ROWS)
    assert batch["input_ids"].tolist() == [[10, 11, 12, 20, 21, 1, 1], [13, 22, 23, 24, 25, 26, 1]]
    assert batch["maskable"].tolist()[0] == [False] * 3 + [True] * 4  # EOS fill is response (LLaDA)
    assert batch["is_padding"].tolist()[0] == [False] * 6 + [True]
    assert batch["answer_length"].tolist() == [4, 6]
    assert "attention_mask" not in batch
    for view in ("context", "target"):
        masked = batch[f"{view}_masked"]
        assert not (masked & ~batch["maskable"]).any() and masked.sum(dim=1).min() >= 1
        assert torch.equal(batch[f"{view}_ids"][~masked], batch["input_ids"][~masked])
        # The encoder's keep mask: the view's visible real tokens; here the last EOS of row 0 is fill.
        keep = batch[f"{view}_keep"]
        assert not (keep & (masked | batch["is_padding"])).any()
        assert (keep | masked | batch["is_padding"]).all()
        assert not keep[0, 6] and keep[0, :3].all()


def test_collator_attention_mask_mode_hides_padding():
    batch = _collator(use_attention_mask=True, pad_to_max_length=True)(ROWS)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].tolist() == [1] * 6 + [0] * 10
    assert batch["input_ids"][0, 6:].eq(2).all()
    assert not (batch["context_masked"] & batch["is_padding"]).any()
    assert batch["answer_length"].tolist() == [3, 6]


def test_step_plan_splits_a_step_the_same_way_for_any_accumulation():
    one = StepPlan(20, 4, 1, 1, 0, seed=5).micro_batches(1, 2)
    two = StepPlan(20, 2, 2, 1, 0, seed=5).micro_batches(1, 2)
    assert one[0] == two[0] + two[1]
    plan = StepPlan(20, 2, 2, 1, 0, seed=5)
    seen = sorted(i for s in range(plan.steps_per_epoch) for m in plan.micro_batches(0, s) for i in m)
    assert seen == sorted(plan.order(0).tolist())  # an epoch reads every row once
    ranks = [StepPlan(20, 2, 1, 2, r, seed=5).micro_batches(0, 0)[0] for r in (0, 1)]
    assert not set(ranks[0]) & set(ranks[1])


def test_length_grouping_pads_less_and_reads_the_same_rows():
    # A mixture: three quarters short rows (~40 tokens), a quarter long ones (~130), shuffled together.
    gen = torch.Generator().manual_seed(0)
    lengths = tuple(int(x) for x in torch.where(torch.rand(400, generator=gen) < 0.25, 130, 40)
                    + torch.randint(0, 8, (400,), generator=gen))
    plain = StepPlan(400, 8, 1, 1, 0, seed=3)
    grouped = StepPlan(400, 8, 1, 1, 0, seed=3, lengths=lengths)

    def padded_tokens(plan: StepPlan, epoch: int) -> int:
        return sum(len(m) * max(lengths[i] for i in m)
                   for s in range(plan.steps_per_epoch) for m in plan.micro_batches(epoch, s))

    for epoch in (0, 1):
        # Same rows every epoch (a permutation of all of them), other partners in a step.
        assert sorted(grouped.order(epoch).tolist()) == list(range(400))
        assert grouped.order(epoch).tolist() != plain.order(epoch).tolist()
        # Padding to each batch's longest row: a random mixture pads nearly every batch to ~130.
        assert padded_tokens(grouped, epoch) < 0.6 * padded_tokens(plain, epoch)
    assert grouped.order(0).tolist() != grouped.order(1).tolist()  # epochs still differ
    assert grouped.order(1).tolist() == StepPlan(400, 8, 1, 1, 0, seed=3, lengths=lengths).order(1).tolist()
    with pytest.raises(ValueError, match="3 lengths for 400 rows"):
        StepPlan(400, 8, 1, 1, 0, seed=3, lengths=(1, 2, 3))


def test_step_plan_computes_each_epochs_order_once():
    plan = StepPlan(400, 8, 1, 1, 0, seed=3, lengths=tuple(range(400)))
    first = plan.order(0)
    assert plan.order(0) is first  # every step of epoch 0 reads this one order
    second = plan.order(1)
    assert second is not first and plan.order(0).tolist() == first.tolist()  # recomputed, the same
    assert plan == StepPlan(400, 8, 1, 1, 0, seed=3, lengths=tuple(range(400)))  # the cache is not state


# -------------------------------------------------------------------------------------- data


def test_jsonl_rows_prompt_response_and_messages(tmp_path, tiny_tokenizer):
    path = tmp_path / "train.jsonl"
    rows = [{"prompt": "Q: 1+1?", "response": " 2"},
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = DataConfig(source="jsonl", path=str(path))
    examples = load_examples(cfg, tiny_tokenizer, None)
    assert examples == [("Q: 1+1?", " 2", False), ("user: hi\nassistant:", " hello", False)]


def test_chat_template_renders_prompt_and_answer(tmp_path, tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot_id|>{% endfor %}"
                         "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "yo"}]}) + "\n")
    [(prompt, response, has_specials)] = load_examples(DataConfig(source="jsonl", path=str(path)), tok, None)
    assert prompt == "<|user|>hi<|eot_id|><|assistant|>" and has_specials
    assert response == "yo<|eot_id|>"


def test_tokenize_truncates_long_responses_and_drops_prompt_only_rows(tiny_tokenizer):
    eos = tiny_tokenizer.eos_token_id
    examples = [("a b", " c", False), ("x " * 40, " y", False), ("q", " long answer " * 20, False)]
    data = tokenize_examples(examples, tiny_tokenizer, eos, max_length=24)
    assert data.num_dropped == 1 and data.num_truncated == 1 and len(data.rows) == 2
    assert data.rows[0]["response_ids"][-1] == eos
    assert len(data.rows[1]["prompt_ids"]) + len(data.rows[1]["response_ids"]) == 24
    assert data.rows[1]["response_ids"][-1] != eos  # a cut answer does not teach the model to stop there


def test_task_rows_use_the_task_suites_prompt_text(tmp_path):
    from dllm_jepa_train.toy.synthetic import generate_all
    from lm_eval_diffusion.prompts import training_pair
    from lm_eval_diffusion.task_data import load_docs

    generate_all(tmp_path, seed=0, scale=0.05)
    for task in ("gsm8k", "nlrx"):
        examples = load_examples(DataConfig(source=task), None, tmp_path)
        docs = load_docs(task, "train", tmp_path)
        assert [e[:2] for e in examples] == [training_pair(task, d) for d in docs]
    text = load_examples(DataConfig(source="text", split="validation"), None, tmp_path)
    assert text and all(prompt == "" for prompt, _, _ in text)


# ------------------------------------------------------------------------ Dream: position 0 is never scored


def test_shifted_logits_keep_a_documents_first_token_out_of_the_mask(tiny_tokenizer):
    """Dream's logit at i predicts token i + 1: no logit predicts position 0, so it must stay visible."""
    eos = tiny_tokenizer.eos_token_id
    examples = [("", "The quick brown fox", False), ("", "dog", False), ("Q:", " a", False)]
    plain = tokenize_examples(examples, tiny_tokenizer, eos, max_length=24)
    shifted = tokenize_examples(examples, tiny_tokenizer, eos, max_length=24, shift_logits=True)
    for before, after in zip(plain.rows[:2], shifted.rows[:2]):
        assert before["prompt_ids"] == [] and after["prompt_ids"] == before["response_ids"][:1]
        assert after["prompt_ids"] + after["response_ids"] == before["response_ids"]
    assert shifted.rows[2] == plain.rows[2]  # a row with a prompt already starts with context
    collator = _collator(t_context=(1.0, 1.0), t_target=(1.0, 1.0), max_length=24)
    for name, data in (("plain", plain), ("shifted", shifted)):
        batch = collator([{**row, "index": i, "epoch": 0} for i, row in enumerate(data.rows)])
        for view in ("context_masked", "target_masked"):
            assert bool(batch[view][:2, 0].any()) == (name == "plain"), (name, view)


def test_dream_text_training_never_reads_the_logit_at_position_0(tmp_path, tiny_checkpoints, monkeypatch):
    from train_helpers import SENTENCES, flags

    import dllm_jepa_train.jepa as jepa
    from dllm_jepa_train.config import load_config
    from dllm_jepa_train.build import build_trainer

    text = tmp_path / "train.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    forward = jepa.model_forward

    def poisoned(model, spec, input_ids, attention_mask=None, output_hidden_states=False):
        logits, hidden = forward(model, spec, input_ids, attention_mask, output_hidden_states)
        logits = logits.clone()
        logits[:, 0] = float("nan")  # Dream: token 1's logit, shifted to position 0
        return logits, hidden

    monkeypatch.setattr(jepa, "model_forward", poisoned)
    every_token = ("--data.source", "text", "--data.path", str(text), "--diffusion.t_context", "1.0",
                   "--jepa.t_target", "1.0")
    trainer = build_trainer(load_config(None, flags(tiny_checkpoints["dream"], text, tmp_path / "run", *every_token)))
    assert all(len(row["prompt_ids"]) == 1 for row in trainer.rows)
    trainer.train()  # a NaN loss would raise NonFiniteLossError
    losses = [json.loads(line)["loss_diff"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
