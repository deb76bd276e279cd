"""Early exit is exact (same returned text as the full loop for every request), saves row-forwards when
answers end, and threshold decoding commits >= 1 token per step and finishes every request.

Random tiny models predict nearly the same distribution everywhere, so their confidence rankings are
decided by rounding; `sharpened` adds a fixed per-position offset (and an EOS/EOT bias that makes
answers end, or forbids them) so the rankings are well defined and a batch-shape change cannot flip
them. The trained-checkpoint variants are in test_early_exit_trained.py.
"""

from __future__ import annotations

import random

import pytest
import torch

from lm_eval_diffusion.backbone import load_backbone
from lm_eval_diffusion.harness import DiffusionLM
from lm_eval_diffusion.stops import cut_text, parse_until, until_cut_if_decided, until_decides
from lm_eval_diffusion.sampler import (
    DreamSamplerConfig,
    LladaSamplerConfig,
    dream_generate,
    ends_at_stop,
    llada_generate,
)


class Request:
    """The part of lm-eval's Instance that an LM reads."""

    def __init__(self, context, gen_kwargs, task_name="tiny"):
        self.args = (context, gen_kwargs)
        self.task_name = task_name


@pytest.fixture(scope="module")
def backbones(tiny_checkpoints):
    return {name: load_backbone(str(tiny_checkpoints[name])) for name in ("llada", "dream")}


def sharpened(logits_fn, spec, stop_bias: float, seed: int = 0, scale: float = 2.0, left_first: bool = False):
    """`logits_fn` plus a fixed random offset per position (std `scale`, counted from the right, so left
    padding does not move it) and `stop_bias` on EOS and EOT. `left_first`: the offset grows to the
    left, so earlier positions are surer and committed first, as a trained model's answers mostly are."""
    offset = scale * torch.randn((256, spec.vocab_size), generator=torch.Generator().manual_seed(seed))
    offset[:, list(spec.stop_ids)] += stop_bias
    if left_first:
        offset *= 1 + torch.arange(256)[:, None] / 4

    def logits(input_ids, attention_mask=None):
        return logits_fn(input_ids, attention_mask) + offset[: input_ids.shape[1]].flip(0)

    return logits


def returned_ids(row: list[int], mask_id: int, stop_ids) -> list[int]:
    """What the harness reads of a generated row: up to the first never-committed position, then the first stop."""
    row = row[: row.index(mask_id)] if mask_id in row else row
    end = next((i for i, tok in enumerate(row) if tok in stop_ids), len(row))
    return row[:end]


def padded_prompts(spec, batch: int):
    """Left-padded prompts of different lengths (pad = EOS here), EOS inside some prompts."""
    rng = random.Random(batch)
    normal = [i for i in range(4, 200) if i not in spec.stop_ids and i != spec.mask_id]
    prompts = []
    for row in range(batch):
        prompt = rng.sample(normal, 3 + 2 * row)
        if row % 2:
            prompt[1] = spec.eos_id  # EOS inside the prompt must not end the row
        prompts.append(prompt)
    P = max(map(len, prompts))
    ids = torch.tensor([[spec.pad_id] * (P - len(p)) + p for p in prompts])
    attention = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
    return ids, (attention if batch > 1 else None)


# ---- the stop rule -----------------------------------------------------------------------------------
def test_ends_at_stop_reads_the_first_masked_or_stop_position():
    M, E, T = 9, 1, 2  # mask, EOS, EOT
    generated = torch.tensor([
        [5, E, M, M],  # a stop before any mask: done
        [5, M, E, E],  # a mask before the stop: the text may still grow
        [5, 6, 7, 8],  # no stop, no mask: not decided by a stop
        [T, 5, M, 6],  # EOT first
        [M, M, M, M],
    ])
    got = ends_at_stop(generated, M, torch.tensor([E, T]))
    assert got.tolist() == [True, False, False, True, False]
    assert not ends_at_stop(generated, M, torch.tensor([], dtype=torch.long)).any()


# ---- sampler: early exit equals the full loop ----------------------------------------------------------
SAMPLER_CASES = [
    ("llada", {}), ("llada", {"cfg_scale": 1.0}), ("llada", {"temperature": 0.8, "remasking": "random"}),
    ("dream", {"alg": "entropy"}), ("dream", {"alg": "maskgit_plus", "temperature": 0.8}),
]


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("family,settings", SAMPLER_CASES)
def test_early_exit_returns_the_full_loops_text_and_saves_forwards(backbones, family, settings, batch):
    bb = backbones[family]
    spec = bb.spec
    fn = sharpened(bb.logits, spec, stop_bias=3.0)
    ids, attention = padded_prompts(spec, batch)
    P = ids.shape[1]
    runs = {}
    for early_exit in (False, True):
        row_forwards = torch.zeros(batch, dtype=torch.long)
        # Seeded per row: a row's draws do not depend on which other rows are still in the canvas.
        generators = [torch.Generator().manual_seed(100 + r) for r in range(batch)]
        if family == "llada":
            config = LladaSamplerConfig(steps=12, gen_length=24, block_length=8, early_exit=early_exit, **settings)
            out = llada_generate(fn, ids, config, mask_id=spec.mask_id, attention_mask=attention,
                                 stop_ids=spec.stop_ids, generator=generators, row_forwards=row_forwards)
        else:
            config = DreamSamplerConfig(steps=12, gen_length=24, early_exit=early_exit, exit_check_every=2, **settings)
            out = dream_generate(fn, ids, config, mask_id=spec.mask_id, attention_mask=attention,
                                 stop_ids=spec.stop_ids, generator=generators, row_forwards=row_forwards)
        assert torch.equal(out[:, :P], ids)
        texts = [returned_ids(row, spec.mask_id, spec.stop_ids) for row in out[:, P:].tolist()]
        runs[early_exit] = (texts, row_forwards.tolist(), out)
    full_texts, full_forwards, full_out = runs[False]
    exit_texts, exit_forwards, exit_out = runs[True]
    assert exit_texts == full_texts
    per_step = 2 if settings.get("cfg_scale") else 1
    assert full_forwards == [12 * per_step] * batch
    assert all(f <= 12 * per_step for f in exit_forwards)
    assert sum(exit_forwards) < sum(full_forwards)  # the stop bias ends answers early
    assert not (full_out == spec.mask_id).any()
    # Exited rows keep masks only where the full loop wrote tokens after their stop.
    exited = [r for r in range(batch) if exit_forwards[r] < full_forwards[r]]
    assert exited and all((exit_out[r, P:] == spec.mask_id).any() for r in exited)


def test_per_row_generators_make_sampling_independent_of_the_batch(backbones):
    bb = backbones["llada"]
    spec = bb.spec
    fn = sharpened(bb.logits, spec, stop_bias=0.0)
    ids, attention = padded_prompts(spec, 5)
    config = LladaSamplerConfig(steps=8, gen_length=16, block_length=8, temperature=0.9)
    batched = llada_generate(fn, ids, config, mask_id=spec.mask_id, attention_mask=attention,
                             generator=[torch.Generator().manual_seed(r) for r in range(5)])
    for r in range(5):
        real = ids[r, attention[r].bool()][None]
        alone = llada_generate(fn, real, config, mask_id=spec.mask_id, generator=torch.Generator().manual_seed(r))
        assert alone[0, real.shape[1]:].tolist() == batched[r, ids.shape[1]:].tolist()
    with pytest.raises(ValueError, match="2 generators for a batch of 5 rows"):
        llada_generate(fn, ids, config, mask_id=spec.mask_id, generator=[torch.Generator()] * 2)


def test_early_exit_needs_the_stop_ids(backbones):
    bb = backbones["llada"]
    with pytest.raises(ValueError, match=r"early_exit=True needs the stop \(EOS/EOT\) id"):
        llada_generate(bb.logits, torch.tensor([[5, 6]]), LladaSamplerConfig(8, 8, 8, early_exit=True),
                       mask_id=bb.spec.mask_id)


# ---- threshold decoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_threshold_commits_at_least_one_per_step_and_finishes(backbones, family):
    bb = backbones[family]
    spec = bb.spec
    fn = sharpened(bb.logits, spec, stop_bias=3.0, scale=4.0)  # some p(x0) > 0.5, most below
    ids, attention = padded_prompts(spec, 5)
    P = ids.shape[1]
    counts, canvases = [], [torch.cat([ids, torch.full((5, 16), spec.mask_id)], dim=1)]

    def record(step, canvas):
        before = canvases[-1]
        newly = (before == spec.mask_id) & (canvas != spec.mask_id)
        assert torch.equal(canvas[before != spec.mask_id], before[before != spec.mask_id])  # never changed
        counts.append(newly.sum(1).tolist())
        canvases.append(canvas.clone())

    row_forwards = torch.zeros(5, dtype=torch.long)
    common = {"mask_id": spec.mask_id, "attention_mask": attention, "on_step": record, "row_forwards": row_forwards}
    if family == "llada":
        config = LladaSamplerConfig(steps=8, gen_length=16, block_length=8, threshold=0.5)
        out = llada_generate(fn, ids, config, **common)
        block_of_step = []
        for canvas in canvases[:-1]:  # the block a step works on: the first with a mask at step start
            masked = (canvas[:, P:] == spec.mask_id).any(0).nonzero()
            block_of_step.append(int(masked[0]) // 8)
        for step, per_row in enumerate(counts):
            lo = P + 8 * block_of_step[step]
            had_mask = (canvases[step][:, lo:lo + 8] == spec.mask_id).any(1).tolist()
            assert all(n >= 1 for n, m in zip(per_row, had_mask) if m)
    else:
        out = dream_generate(fn, ids, DreamSamplerConfig(steps=8, gen_length=16, threshold=0.5), **common)
        for step, per_row in enumerate(counts):
            had_mask = (canvases[step][:, P:] == spec.mask_id).any(1).tolist()
            assert all(n >= 1 for n, m in zip(per_row, had_mask) if m)
    assert not (out[:, P:] == spec.mask_id).any()
    # Parallel commits somewhere: fewer forwards than one token per step would take.
    assert len(counts) < 16 and max(max(c) for c in counts) > 1
    assert row_forwards.tolist() == [len(counts)] * 5


def test_threshold_settings_are_checked():
    with pytest.raises(ValueError, match=r"threshold must be None or in \(0, 1\), got 1.5"):
        LladaSamplerConfig(threshold=1.5).validate()
    with pytest.raises(ValueError, match="threshold needs remasking='low_confidence'"):
        LladaSamplerConfig(threshold=0.9, remasking="random").validate()
    with pytest.raises(ValueError, match="alg_temp=0.5 cannot apply"):
        DreamSamplerConfig(threshold=0.9, alg_temp=0.5).validate()


# ---- the until check against postprocess --------------------------------------------------------------
def test_until_cut_if_decided_by_hand():
    assert until_cut_if_decided("abc\ndef", ["\n"]) == "abc"
    assert until_cut_if_decided("abc", ["\n"]) is None
    # Sequential cuts as postprocess makes them: "c" first, then "bc" is no longer in "ab".
    assert until_cut_if_decided("abcd", ["c", "bc"]) == "ab"
    # "Question:" may still start at "Quest": nothing is decided yet...
    assert until_cut_if_decided("ab Quest", ["Question:"]) is None
    # ...unless a later stop cuts before that point, or the stop cannot start there.
    assert until_cut_if_decided("x\nQuest", ["Question:", "\n"]) == "x"
    assert until_cut_if_decided("x Quest\n", ["Question:", "\n"]) == "x Quest"
    assert until_cut_if_decided("x\nQuestion: y", ["Question:", "\n"]) == "x"
    assert until_cut_if_decided("", ["a"]) is None and until_cut_if_decided("abc", []) is None


def test_until_kwarg_is_a_list_of_stop_strings_without_eos_and_cuts_in_turn():
    assert parse_until(None) == [] and parse_until("\n") == ["\n"] and parse_until(("a", "b")) == ["a", "b"]
    with pytest.raises(ValueError, match="`until` must be a string or a list of strings, got \\[1\\]"):
        parse_until([1])
    assert cut_text("abcd<|eot_id|>e", ["c", "bc", ""], ["<|eot_id|>"]) == "ab"
    assert cut_text("a<|eot_id|>b\nc", ["\n"], ["<|eot_id|>"]) == "ab"  # specials dropped after the cuts


def test_until_decision_never_differs_from_postprocess(tiny_checkpoints):
    """For random committed prefixes, whenever the harness calls a row decided, every continuation
    gives the same `postprocess` text as the prefix alone; and it does decide often enough to matter.
    Prefixes often end in part of a stop string and continuations often complete it."""
    lm = DiffusionLM(pretrained=str(tiny_checkpoints["llada"]), device="cpu")
    spec = lm.backbone.spec
    rng = random.Random(0)
    encode = lambda text: lm.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    chars = lambda text: [tok for ch in text for tok in encode(ch)]  # noqa: E731
    decode = lambda ids: lm.tokenizer.decode(ids, skip_special_tokens=False)  # noqa: E731
    cleans_up = bool(getattr(lm.tokenizer, "clean_up_tokenization_spaces", False))
    text_ids = [i for i in range(len(lm.tokenizer)) if i not in spec.stop_ids and i != spec.mask_id]
    text_ids += encode("Question: abc\n\n the Answer <|eot_id|>") * 20
    special = [spec.eos_id, spec.eot_id]
    untils = [["\n"], ["Question:"], ["c", "bc"], [" t", "e"], ["<|eot_id|>", "\n\n"], ["Answer", ""],
              ["Question:", "\n"], ["Question:", "st"]]  # the last: a later stop inside an earlier one
    decided = 0
    for trial in range(800):
        until = untils[trial % len(untils)]
        stop = rng.choice([u for u in until if u])
        split = rng.randint(1, len(stop))  # the prefix ends in stop[:split], the continuation may finish it
        prefix = [rng.choice(text_ids) for _ in range(rng.randint(1, 10))]
        if rng.random() < 0.5:
            prefix += chars(stop[:split])
        if not until_decides(prefix, until, decode, cleans_up_spaces=cleans_up):
            continue
        decided += 1
        expected = lm.postprocess(prefix, until)
        for _ in range(10):
            rest = chars(stop[split:]) if rng.random() < 0.5 else []
            rest += [rng.choice(text_ids + special) for _ in range(rng.randint(1, 6))]
            assert lm.postprocess(prefix + rest, until) == expected, (prefix, rest, until)
    assert decided > 80


# ---- the harness: texts, row-forwards, model info ----------------------------------------------------
CONTEXTS = ["Question: Tom has 3 apples", "SELECT count(*) FROM singer", "dog", "The quick brown fox jumps",
            "baz = foo ( bar )", "lines containing the word dog", "0123456789", "Answer:"]


def harness_run(path, stop_bias, until, batch_size, **model_args):
    lm = DiffusionLM(pretrained=str(path), device="cpu", batch_size=batch_size, **model_args)
    lm.backbone.logits = sharpened(lm.backbone.logits, lm.backbone.spec, stop_bias, left_first=True)
    requests = [Request(c, {"until": until}, task_name=f"task{i % 2}") for i, c in enumerate(CONTEXTS)]
    return lm.generate_until(requests), lm.get_model_info()


HARNESS_CASES = [
    ("llada", 3.0, [], {"steps": 12, "gen_length": 24, "block_length": 8}),
    ("llada", 3.0, ["\n"], {"steps": 12, "gen_length": 24, "block_length": 8, "cfg_scale": 1.0}),
    # EOS and EOT can never win: only the `until` check can end a row (None: stops taken from the text).
    ("llada", -1e4, None, {"steps": 12, "gen_length": 24, "block_length": 8}),
    ("dream", 3.0, ["\n"], {"steps": 12, "gen_length": 24}),
    ("dream", -1e4, None, {"steps": 12, "gen_length": 24, "temperature": 0.7}),
]


@pytest.mark.parametrize("family,stop_bias,until,model_args", HARNESS_CASES)
def test_generate_until_texts_equal_without_early_exit(tiny_checkpoints, family, stop_bias, until, model_args):
    if until is None:
        # Stop strings that do occur early: characters 2-4 of a full-loop text (inside its first tokens),
        # and a later one that the first cut makes irrelevant.
        text = harness_run(tiny_checkpoints[family], stop_bias, [], 5, early_exit=False, **model_args)[0][0]
        until = [text[2:4], text[6:8]]
        assert len(text) > 8
    runs = {}
    for early_exit in (False, True):
        for batch_size in (1, 5):
            runs[early_exit, batch_size] = harness_run(
                tiny_checkpoints[family], stop_bias, until, batch_size, early_exit=early_exit, **model_args)
    reference = runs[False, 1][0]
    assert all(texts == reference for texts, _ in runs.values())
    for batch_size in (1, 5):
        full = runs[False, batch_size][1]["row_forwards"]
        saved = runs[True, batch_size][1]["row_forwards"]
        assert set(full) == set(saved) == {"task0", "task1"}
        for task in full:
            assert full[task]["row_forwards"] == full[task]["row_forwards_full_loop"] > 0
            assert full[task]["requests"] == saved[task]["requests"] == 4
            assert saved[task]["row_forwards_full_loop"] == full[task]["row_forwards_full_loop"]
        assert sum(s["row_forwards"] for s in saved.values()) < sum(f["row_forwards"] for f in full.values())
    info = runs[True, 5][1]
    assert info["early_exit"] is True and info["threshold"] is None


def test_threshold_mode_finishes_and_is_recorded(tiny_checkpoints):
    texts, info = harness_run(tiny_checkpoints["llada"], 3.0, ["\n"], 5, steps=12, gen_length=24, block_length=8,
                              threshold=0.5)
    assert len(texts) == len(CONTEXTS) and all(isinstance(t, str) for t in texts)
    assert info["threshold"] == 0.5 and "not the paper's protocol" in info["decoding"]
    spent = sum(t["row_forwards"] for t in info["row_forwards"].values())
    assert 0 < spent < sum(t["row_forwards_full_loop"] for t in info["row_forwards"].values())
