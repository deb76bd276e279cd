"""Samplers against straightforward per-row reference loops written here from the algorithms' descriptions
(LLaDA's generate.py, Dream's diffusion_generate), plus schedule invariants and seeded reproducibility."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from lm_eval_diffusion.backbone import load_backbone
from lm_eval_diffusion.sampler import (
    DreamSamplerConfig,
    LladaSamplerConfig,
    dream_generate,
    llada_generate,
    num_transfer_tokens,
    top_k_per_row,
)

PROMPT = [5, 6, 7, 8, 9, 10, 11]


@pytest.fixture(scope="module")
def backbones(tiny_checkpoints):
    return {name: load_backbone(str(path)) for name, path in tiny_checkpoints.items()}


def sharpened(bb, eos_bias: float = 0.0):
    """The tiny model plus a fixed per-position random offset (and optionally EOS/EOT pushed up).

    A randomly initialised tiny model predicts nearly the same distribution at every masked position
    (confidences differ by ~1e-7), so rankings there are decided by rounding, not by the algorithm;
    the offset separates them while the output still depends on the whole canvas through the model.
    """
    offset = 2.0 * torch.randn((64, bb.spec.vocab_size), generator=torch.Generator().manual_seed(0))
    offset[:, [bb.spec.eos_id, bb.spec.eot_id]] += eos_bias

    def logits_fn(input_ids, attention_mask):
        # Indexed from the right end, so left padding does not move a position's offset.
        return bb.logits(input_ids, attention_mask) + offset[: input_ids.shape[1]].flip(0)

    return logits_fn


# ---- reference loops (one row, Python lists, float64) -----------------------------------------------
@torch.no_grad()
def oracle_llada(logits_fn, prompt, *, mask_id, steps, gen_length, block_length, cfg_scale=0.0,
                 temperature=0.0, remasking="low_confidence", eos_id=None, eot_id=None,
                 logits_eos_inf=False, confidence_eos_eot_inf=False, generator=None):
    """LLaDA's generate for one prompt: blocks left to right, m//s (+1 on the first m%s steps) per step,
    commit the most confident masked positions of the block (ties: lower position); the mask token is
    never predicted. Random draws in the layout sampler.llada_generate documents."""
    x = list(prompt) + [mask_id] * gen_length
    P = len(prompt)
    num_blocks = gen_length // block_length
    per_block = steps // num_blocks
    V = None
    for b in range(num_blocks):
        lo, hi = P + b * block_length, P + (b + 1) * block_length
        m = sum(1 for pos in range(lo, hi) if x[pos] == mask_id)
        counts = [m // per_block + (1 if i < m % per_block else 0) for i in range(per_block)]
        for i in range(per_block):
            ids = torch.tensor([x])
            logits = logits_fn(ids, None)[0].double()
            if cfg_scale > 0:
                un = torch.tensor([[mask_id] * P + x[P:]])
                un_logits = logits_fn(un, None)[0].double()
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            V = logits.shape[-1]
            noise = None
            if temperature > 0:
                noise = torch.rand((1, block_length, V), dtype=torch.float64, generator=generator)[0]
            draws = torch.rand((1, block_length), generator=generator)[0] if remasking == "random" else None
            candidates = []
            for pos in range(lo, hi):
                if x[pos] != mask_id:
                    continue
                row = logits[pos].clone()
                row[mask_id] = -math.inf  # the mask token is never a prediction
                if logits_eos_inf:
                    row[eos_id] = -math.inf
                if temperature > 0:
                    x0 = int(torch.argmax(row.exp() / (-torch.log(noise[pos - lo])) ** temperature))
                else:
                    x0 = int(torch.argmax(row))
                if remasking == "random":
                    conf = float(draws[pos - lo])
                else:
                    crow = row.clone()
                    if confidence_eos_eot_inf:
                        crow[eos_id] = -math.inf
                        crow[eot_id] = -math.inf
                    conf = float(torch.softmax(crow, dim=-1)[x0])
                candidates.append((conf, pos, x0))
            candidates.sort(key=lambda c: (-c[0], c[1]))
            for _, pos, x0 in candidates[:counts[i]]:
                x[pos] = x0
    return x


@torch.no_grad()
def oracle_dream(logits_fn, prompt, *, mask_id, steps, gen_length, alg, eps=1e-3):
    """Dream's diffusion_generate for one prompt, greedy: k = int(m * (1 - s/t)) (all on the last step)
    most confident masked positions per step; origin commits each with probability 1 - s/t (needs rand)."""
    x = list(prompt) + [mask_id] * gen_length
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        logits = logits_fn(torch.tensor([x]), None)[0].double()
        t, s = timesteps[i], timesteps[i + 1]
        masked = [pos for pos in range(len(prompt), len(x)) if x[pos] == mask_id]
        candidates = []
        for pos in masked:
            row = logits[pos].clone()
            row[mask_id] = -math.inf  # the mask token is never a prediction
            probs = torch.softmax(row, dim=-1)
            x0 = int(torch.argmax(probs))
            if alg == "maskgit_plus":
                conf = float(probs[x0])
            elif alg == "topk_margin":
                top = torch.sort(probs, descending=True).values
                conf = float(top[0] - top[1])
            else:
                conf = float((probs * torch.log(probs + 1e-10)).sum())
            candidates.append((conf, pos, x0))
        # Dream's arithmetic: a long count times a float32 0-d tensor, truncated by int().
        k = int(torch.tensor(len(masked)) * (1 - s / t)) if i < steps - 1 else len(masked)
        candidates.sort(key=lambda c: (-c[0], c[1]))
        for _, pos, x0 in candidates[:k]:
            x[pos] = x0
    return x


# ---- schedule --------------------------------------------------------------------------------------
def test_num_transfer_tokens_matches_hand_cases():
    got = num_transfer_tokens(torch.tensor([10, 3, 0, 8]), 4)
    assert got.tolist() == [[3, 3, 2, 2], [1, 1, 1, 0], [0, 0, 0, 0], [2, 2, 2, 2]]
    assert got.sum(1).tolist() == [10, 3, 0, 8]


def test_top_k_per_row_uses_each_rows_k_and_breaks_ties_by_position():
    scores = torch.tensor([[0.1, 0.5, 0.5, -math.inf], [0.3, 0.2, 0.9, 0.1]])
    assert top_k_per_row(scores, torch.tensor([2, 1])).tolist() == [
        [False, True, True, False], [False, False, True, False]]
    assert top_k_per_row(scores, torch.tensor([1, 0])).tolist() == [
        [False, True, False, False], [False, False, False, False]]


def test_bad_settings_name_the_values():
    with pytest.raises(ValueError, match=r"steps=10 .*32/8 = 4 blocks"):
        LladaSamplerConfig(steps=10, gen_length=32, block_length=8).validate()
    with pytest.raises(ValueError, match=r"gen_length=20 is not a multiple of block_length=8"):
        LladaSamplerConfig(steps=8, gen_length=20, block_length=8).validate()
    with pytest.raises(ValueError, match="remasking must be one of low_confidence, random"):
        LladaSamplerConfig(steps=8, gen_length=8, block_length=8, remasking="top").validate()
    with pytest.raises(ValueError, match="alg must be one of origin, maskgit_plus"):
        DreamSamplerConfig(steps=8, gen_length=8, alg="greedy").validate()


# ---- greedy equals the reference loops ---------------------------------------------------------------
LLADA_CASES = {
    "plain": {},
    "blocks": {"steps": 12, "gen_length": 24, "block_length": 8},
    "cfg": {"cfg_scale": 1.5},
    "logits_eos_inf": {"logits_eos_inf": True},
    "confidence_eos_eot_inf": {"confidence_eos_eot_inf": True},
}


LLADA_GRID = [(family, case) for family in ("generic", "llada", "dream") for case in ("plain", "blocks")] + [
    ("llada", case) for case in ("cfg", "logits_eos_inf", "confidence_eos_eot_inf")] + [("dream", "cfg")]


@pytest.mark.parametrize("family,case", LLADA_GRID)
def test_llada_sampler_greedy_equals_reference_loop(backbones, family, case):
    bb = backbones[family]
    settings = {"steps": 8, "gen_length": 16, "block_length": 8, **LLADA_CASES[case]}
    logits_fn = sharpened(bb, eos_bias=3.0 if "eos" in case else 0.0)
    spec = bb.spec
    expected = oracle_llada(logits_fn, PROMPT, mask_id=spec.mask_id, eos_id=spec.eos_id, eot_id=spec.eot_id,
                            **settings)
    got = llada_generate(logits_fn, torch.tensor([PROMPT]), LladaSamplerConfig(**settings), mask_id=spec.mask_id,
                         eos_ids=[spec.eos_id], eot_ids=[spec.eot_id])
    assert got[0].tolist() == expected
    assert spec.mask_id not in got[0].tolist()


def commit_steps(canvases, mask_id):
    """For each position, the step at which it was committed (-1: never masked)."""
    first = canvases[0][0]
    steps = [-1] * first.shape[0]
    for step, (before, after) in enumerate(zip(canvases, canvases[1:])):
        for pos in ((before[0] == mask_id) & (after[0] != mask_id)).nonzero().flatten().tolist():
            steps[pos] = step
    return steps


def test_eos_options_do_what_they_say(backbones):
    """With EOS/EOT pushed up: plain sampling commits them early; logits_eos_inf never generates EOS;
    confidence_eos_eot_inf commits them only after every other position of their block."""
    bb = backbones["llada"]
    spec = bb.spec
    fn = sharpened(bb, eos_bias=4.0)
    prompt = torch.tensor([PROMPT])
    base = LladaSamplerConfig(steps=8, gen_length=16, block_length=8)
    stops = {spec.eos_id, spec.eot_id}

    def run(config):
        recorder = Recorder(torch.cat([prompt, torch.full((1, 16), spec.mask_id)], dim=1))
        out = llada_generate(fn, prompt, config, mask_id=spec.mask_id, eos_ids=[spec.eos_id],
                             eot_ids=[spec.eot_id], on_step=recorder)
        return out[0].tolist(), commit_steps(recorder.canvases, spec.mask_id)

    def stops_last_in_every_block(tokens, steps):
        for lo in (len(PROMPT), len(PROMPT) + 8):
            block = range(lo, lo + 8)
            stop_steps = [steps[p] for p in block if tokens[p] in stops]
            other_steps = [steps[p] for p in block if tokens[p] not in stops]
            if stop_steps and other_steps and min(stop_steps) < max(other_steps):
                return False
        return True

    plain_tokens, plain_steps = run(base)
    assert stops & set(plain_tokens[len(PROMPT):])
    assert not stops_last_in_every_block(plain_tokens, plain_steps)
    no_eos, _ = run(dataclasses.replace(base, logits_eos_inf=True))
    assert spec.eos_id not in no_eos[len(PROMPT):]
    late_tokens, late_steps = run(dataclasses.replace(base, confidence_eos_eot_inf=True))
    assert stops & set(late_tokens[len(PROMPT):])
    assert stops_last_in_every_block(late_tokens, late_steps)


def test_eos_options_without_ids_are_an_error(backbones):
    bb = backbones["llada"]
    with pytest.raises(ValueError, match="logits_eos_inf=True needs the EOS id"):
        llada_generate(bb.logits, torch.tensor([PROMPT]), LladaSamplerConfig(8, 8, 8, logits_eos_inf=True),
                       mask_id=bb.spec.mask_id)


@pytest.mark.parametrize("remasking,temperature", [("random", 0.0), ("low_confidence", 0.7), ("random", 1.0)])
def test_llada_seeded_sampling_equals_reference_with_same_draws(backbones, remasking, temperature):
    bb = backbones["llada"]
    settings = {"steps": 8, "gen_length": 16, "block_length": 8, "remasking": remasking, "temperature": temperature}
    fn = sharpened(bb)
    mask_id = bb.spec.mask_id
    expected = oracle_llada(fn, PROMPT, mask_id=mask_id, generator=torch.Generator().manual_seed(7), **settings)
    traces = {}
    for seed in (7, 8):
        recorder = Recorder(torch.tensor([PROMPT + [mask_id] * 16]))
        got = llada_generate(fn, torch.tensor([PROMPT]), LladaSamplerConfig(**settings), mask_id=mask_id,
                             generator=torch.Generator().manual_seed(seed), on_step=recorder)
        traces[seed] = (got[0].tolist(), commit_steps(recorder.canvases, mask_id))
    assert traces[7][0] == expected
    assert traces[7] != traces[8]  # the seed matters, so the equality above is not vacuous


DREAM_GRID = [("dream", alg) for alg in ("maskgit_plus", "topk_margin", "entropy")] + [
    (family, "entropy") for family in ("generic", "llada")]


@pytest.mark.parametrize("family,alg", DREAM_GRID)
def test_dream_sampler_greedy_equals_reference_loop(backbones, family, alg):
    bb = backbones[family]
    settings = {"steps": 7, "gen_length": 16, "alg": alg}
    fn = sharpened(bb)
    expected = oracle_dream(fn, PROMPT, mask_id=bb.spec.mask_id, **settings)
    got = dream_generate(fn, torch.tensor([PROMPT]), DreamSamplerConfig(**settings), mask_id=bb.spec.mask_id)
    assert got[0].tolist() == expected


def test_dream_origin_is_seeded_and_fills_everything(backbones):
    bb = backbones["dream"]
    config = DreamSamplerConfig(steps=6, gen_length=16, alg="origin")
    runs = [dream_generate(bb.logits, torch.tensor([PROMPT]), config, mask_id=bb.spec.mask_id,
                           generator=torch.Generator().manual_seed(seed))[0].tolist() for seed in (3, 3)]
    assert runs[0] == runs[1]
    assert bb.spec.mask_id not in runs[0] and runs[0][:len(PROMPT)] == PROMPT


# ---- invariants ------------------------------------------------------------------------------------
class Recorder:
    """on_step callback: the canvas after every step."""

    def __init__(self, initial: torch.Tensor):
        self.canvases = [initial.clone()]

    def __call__(self, step: int, canvas: torch.Tensor) -> None:
        assert step == len(self.canvases) - 1
        self.canvases.append(canvas.clone())


def check_commits(canvases, mask_id, prompt_len):
    """Per step and row, the number of newly committed positions; asserts none is ever remasked or changed."""
    counts = []
    for before, after in zip(canvases, canvases[1:]):
        assert torch.equal(after[:, :prompt_len], canvases[0][:, :prompt_len])
        was_set = before != mask_id
        assert torch.equal(after[was_set], before[was_set]), "a committed token changed"
        counts.append(((before == mask_id) & (after != mask_id)).sum(1).tolist())
    return counts


def test_llada_commits_exactly_the_schedule_and_never_remasks(backbones):
    bb = backbones["llada"]
    prompts = torch.tensor([PROMPT, [12, 13, 14, 15, 16, 17, 18]])
    config = LladaSamplerConfig(steps=9, gen_length=15, block_length=5)
    mask_id = bb.spec.mask_id
    initial = torch.cat([prompts, torch.full((2, 15), mask_id)], dim=1)
    recorder = Recorder(initial)
    out = llada_generate(bb.logits, prompts, config, mask_id=mask_id, on_step=recorder)
    counts = check_commits(recorder.canvases, mask_id, prompts.shape[1])
    # 3 blocks of 5 masks, 3 steps each: 2, 2, 1 per block.
    assert counts == [[2, 2], [2, 2], [1, 1]] * 3
    for step, canvas in enumerate(recorder.canvases[1:]):
        block = step // 3
        # Nothing beyond the current block is committed.
        assert (canvas[:, prompts.shape[1] + (block + 1) * 5:] == mask_id).all()
    assert not (out == mask_id).any()


def test_dream_commits_exactly_the_schedule_and_never_remasks(backbones):
    bb = backbones["dream"]
    config = DreamSamplerConfig(steps=5, gen_length=16, alg="entropy")
    mask_id = bb.spec.mask_id
    prompts = torch.tensor([PROMPT])
    recorder = Recorder(torch.cat([prompts, torch.full((1, 16), mask_id)], dim=1))
    dream_generate(bb.logits, prompts, config, mask_id=mask_id, on_step=recorder)
    counts = [c[0] for c in check_commits(recorder.canvases, mask_id, len(PROMPT))]
    timesteps = torch.linspace(1, 1e-3, 6)
    remaining, expected = 16, []
    for i in range(5):
        k = remaining if i == 4 else int(torch.tensor(remaining) * (1 - timesteps[i + 1] / timesteps[i]))
        expected.append(k)
        remaining -= k
    assert counts == expected and sum(counts) == 16


def test_padded_batch_equals_single_rows(backbones):
    """Left padding plus the attention mask: each row of a padded batch equals its own unpadded run."""
    for name in ("generic", "llada", "dream"):
        bb = backbones[name]
        fn = sharpened(bb)
        assert bb.honours_padding
        mask_id, pad = bb.spec.mask_id, bb.spec.pad_id
        prompts = [PROMPT, PROMPT[:3], PROMPT[2:]]
        P = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (P - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts])
        llada_cfg = LladaSamplerConfig(steps=8, gen_length=16, block_length=8)
        dream_cfg = DreamSamplerConfig(steps=8, gen_length=16)
        batch_l = llada_generate(fn, ids, llada_cfg, mask_id=mask_id, attention_mask=attention)
        batch_d = dream_generate(fn, ids, dream_cfg, mask_id=mask_id, attention_mask=attention)
        for row, prompt in enumerate(prompts):
            single_l = llada_generate(fn, torch.tensor([prompt]), llada_cfg, mask_id=mask_id)
            single_d = dream_generate(fn, torch.tensor([prompt]), dream_cfg, mask_id=mask_id)
            assert batch_l[row, P:].tolist() == single_l[0, len(prompt):].tolist(), name
            assert batch_d[row, P:].tolist() == single_d[0, len(prompt):].tolist(), name
