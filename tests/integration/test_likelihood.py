"""Monte-Carlo ELBO against exact enumeration written here: E_n E_S[(L/n) sum_{i in S} -log p(x_i | ...)]."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lm_eval_diffusion.backbone import load_backbone
from lm_eval_diffusion.likelihood import (
    elbo,
    elbo_exact,
    elbo_mc,
    random_subset_masks,
    single_token_logprobs,
    stratified_mask_counts,
    uses_exact_enumeration,
)

PROMPT = [5, 6, 7, 8, 9]
CONT = [20, 31, 42, 53]


@pytest.fixture(scope="module")
def backbones(tiny_checkpoints):
    return {name: load_backbone(str(tiny_checkpoints[name])) for name in ("llada", "dream")}


@torch.no_grad()
def subset_losses(logits_fn, prompt, cont, mask_id):
    """{subset: (L/n) * sum over the subset of -log p}, one forward per subset, float64."""
    L = len(cont)
    out = {}
    for n in range(1, L + 1):
        for subset in itertools.combinations(range(L), n):
            noisy = list(prompt) + [mask_id if i in subset else tok for i, tok in enumerate(cont)]
            logp = torch.log_softmax(logits_fn(torch.tensor([noisy]), None)[0].double(), dim=-1)
            nll = -sum(float(logp[len(prompt) + i, cont[i]]) for i in subset)
            out[subset] = L / n * nll
    return out


def exact_from_losses(losses, L):
    by_n = {n: [v for s, v in losses.items() if len(s) == n] for n in range(1, L + 1)}
    return -sum(sum(vals) / len(vals) for vals in by_n.values()) / L, by_n


def test_stratified_counts_cover_every_n_evenly():
    counts = stratified_mask_counts(128, 4, 0.37)
    assert counts.min() == 1 and counts.max() == 4
    assert torch.bincount(counts, minlength=5)[1:].tolist() == [32, 32, 32, 32]
    uneven = stratified_mask_counts(10, 4, 0.9)
    per_n = torch.bincount(uneven, minlength=5)[1:]
    assert per_n.sum() == 10 and per_n.min() >= 2 and per_n.max() <= 3
    with pytest.raises(ValueError, match="offset"):
        stratified_mask_counts(4, 4, 1.0)


def test_random_subset_masks_have_exact_counts_and_vary():
    counts = torch.tensor([1, 2, 3, 4, 2, 2])
    masks = random_subset_masks(counts, 4, torch.Generator().manual_seed(0))
    assert masks.sum(1).tolist() == counts.tolist()
    many = random_subset_masks(torch.full((400,), 1), 4, torch.Generator().manual_seed(1))
    assert (many.sum(0) > 60).all()  # each position is the single masked one about 100 times


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_elbo_exact_equals_enumeration_here(backbones, family):
    bb = backbones[family]
    expected, _ = exact_from_losses(subset_losses(bb.logits, PROMPT, CONT, bb.spec.mask_id), len(CONT))
    got = elbo_exact(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, batch_size=4)
    assert got.item() == pytest.approx(expected, abs=1e-5)


def test_mc_elbo_is_within_its_standard_error_of_the_exact_value(backbones):
    bb = backbones["dream"]
    L, mc_num = len(CONT), 128
    exact, by_n = exact_from_losses(subset_losses(bb.logits, PROMPT, CONT, bb.spec.mask_id), L)
    # With mc_num a multiple of L each n gets mc_num / L samples; only the subset within n is random.
    variance = sum((mc_num / L) * torch.tensor(vals).var(unbiased=False).item() for vals in by_n.values()) / mc_num**2
    estimates = [
        elbo_mc(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, mc_num=mc_num,
                batch_size=64, generator=torch.Generator().manual_seed(seed)).item()
        for seed in range(2)
    ]
    for estimate in estimates:
        assert abs(estimate - exact) < 4 * math.sqrt(variance) + 1e-6
    assert len(set(estimates)) == 2  # the estimate is random, so the check above is not vacuous
    again = elbo_mc(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, mc_num=mc_num,
                    batch_size=32, generator=torch.Generator().manual_seed(0)).item()
    assert again == pytest.approx(estimates[0], abs=1e-9)  # same seed, other batching: same masks


def test_single_token_continuation_is_exact(backbones):
    """L = 1: one mask, weight 1, so every sample is log p(x | prompt, [MASK]) and MC equals exact."""
    bb = backbones["llada"]
    with torch.no_grad():
        logits = bb.logits(torch.tensor([PROMPT + [bb.spec.mask_id]]), None)[0, -1].double()
    expected = torch.log_softmax(logits, dim=-1)[CONT[0]].item()
    got = elbo_mc(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT[:1]), mask_id=bb.spec.mask_id, mc_num=8,
                  batch_size=8, generator=torch.Generator().manual_seed(0))
    assert got.item() == pytest.approx(expected, abs=1e-5)


class CountingLogits:
    """A logits function that counts forwards and the masked copies (rows) they carry."""

    def __init__(self, logits_fn):
        self.logits_fn, self.forwards, self.rows = logits_fn, 0, 0

    def __call__(self, ids, attention_mask):
        self.forwards += 1
        self.rows += ids.shape[0]
        return self.logits_fn(ids, attention_mask)


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_single_token_logprobs_score_every_candidate_with_one_forward(backbones, family):
    bb = backbones[family]
    candidates = [20, 31, 42, 53]
    counting = CountingLogits(bb.logits)
    got = single_token_logprobs(counting, torch.tensor(PROMPT), torch.tensor(candidates), mask_id=bb.spec.mask_id)
    assert (counting.forwards, counting.rows) == (1, 1)
    for candidate, value in zip(candidates, got.tolist()):
        expected = exact_from_losses(subset_losses(bb.logits, PROMPT, [candidate], bb.spec.mask_id), 1)[0]
        assert value == pytest.approx(expected, abs=1e-6)


def test_single_token_logprobs_with_cfg_equal_the_exact_elbo(backbones):
    bb = backbones["llada"]
    got = single_token_logprobs(bb.logits, torch.tensor(PROMPT), torch.tensor([CONT[0]]), mask_id=bb.spec.mask_id,
                                cfg_scale=1.5)
    exact = elbo_exact(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT[:1]), mask_id=bb.spec.mask_id, cfg_scale=1.5)
    assert got.item() == pytest.approx(exact.item(), abs=1e-6)


def test_elbo_enumerates_exactly_when_that_is_no_dearer_than_sampling(backbones):
    bb = backbones["dream"]
    assert [uses_exact_enumeration(L, 128) for L in (1, 7, 8)] == [True, True, False]
    assert uses_exact_enumeration(4, 15) and not uses_exact_enumeration(4, 14)
    exact = elbo_exact(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, batch_size=8)
    counting = CountingLogits(bb.logits)
    got = elbo(counting, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, mc_num=15, batch_size=8,
               generator=torch.Generator().manual_seed(0))
    assert got.item() == exact.item()
    assert (counting.forwards, counting.rows) == (2, 15)  # all 2^4 - 1 masks, 8 per forward
    sampled = elbo(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, mc_num=14,
                   batch_size=8, generator=torch.Generator().manual_seed(0))
    reference = elbo_mc(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT), mask_id=bb.spec.mask_id, mc_num=14,
                        batch_size=8, generator=torch.Generator().manual_seed(0))
    assert sampled.item() == reference.item() != exact.item()


def test_cfg_changes_the_estimate_and_matches_its_formula(backbones):
    bb = backbones["llada"]
    mask_id = bb.spec.mask_id
    cond = subset_losses(bb.logits, PROMPT, CONT[:2], mask_id)

    def guided(ids, attention_mask, scale=2.0):
        unconditional = ids.clone()
        unconditional[:, :len(PROMPT)] = mask_id
        c, u = bb.logits(ids, None), bb.logits(unconditional, None)
        return u + (scale + 1) * (c - u)

    expected, _ = exact_from_losses(subset_losses(guided, PROMPT, CONT[:2], mask_id), 2)
    got = elbo_exact(bb.logits, torch.tensor(PROMPT), torch.tensor(CONT[:2]), mask_id=mask_id, cfg_scale=2.0)
    assert got.item() == pytest.approx(expected, abs=1e-4)
    assert abs(expected - exact_from_losses(cond, 2)[0]) > 1e-3


def test_empty_continuation_is_an_error(backbones):
    bb = backbones["llada"]
    with pytest.raises(ValueError, match="continuation is empty"):
        elbo_mc(bb.logits, torch.tensor(PROMPT), torch.tensor([], dtype=torch.long), mask_id=bb.spec.mask_id,
                mc_num=4, batch_size=4, generator=torch.Generator())
