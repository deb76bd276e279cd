"""Monte-Carlo ELBO of a continuation given a prompt, for lm-eval's loglikelihood requests.

A masked diffusion LM has no left-to-right factorisation; its conditional likelihood is bounded below by
(LLaDA paper, Eq. 6)

    log p(x | prompt) >= ELBO = -E_n E_S [ (L / n) * sum_{i in S} -log p(x_i | prompt, x with S masked) ]

with n uniform on {1, ..., L} and S a uniformly random n-subset of the L continuation positions; the
prompt is never masked. `elbo_mc` estimates it with `mc_num` samples whose n are stratified
(systematic sampling: n_k = 1 + floor((k + u) * L / mc_num) for k = 0..mc_num-1, one shared
u ~ U[0, 1)), so every n appears mc_num / L times up to rounding and the estimate stays unbiased.
`elbo_exact` enumerates every subset (2^L - 1 masked copies) and has no variance; `elbo` uses it
whenever 2^L - 1 <= mc_num, i.e. when enumeration costs no more forwards than sampling. For L = 1 the
only subset masks the one continuation token, so the ELBO is exactly log p(x | prompt, [mask]) and the
masked input does not depend on x: `single_token_logprobs` scores every one-token candidate (MMLU's
" A".." D") with one forward per prompt. `score_requests` applies all of this to a list of requests (what
the harness's loglikelihood scores), `fills_greedily` is its is_greedy check.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch.nn import functional as F

from lm_eval_diffusion.sampler import LladaSamplerConfig, LogitsFn, guided_logits, llada_generate


def stratified_mask_counts(num_samples: int, length: int, offset: float) -> torch.Tensor:
    """(num_samples,) long counts in [1, length]: n_k = 1 + floor((k + offset) * length / num_samples)."""
    if not 0 <= offset < 1:
        raise ValueError(f"offset must be in [0, 1), got {offset}")
    if num_samples < 1 or length < 1:
        raise ValueError(f"num_samples and length must be >= 1, got {num_samples}, {length}")
    k = torch.arange(num_samples, dtype=torch.float64)
    return (1 + torch.floor((k + offset) * length / num_samples)).long().clamp(1, length)


def random_subset_masks(counts: torch.Tensor, length: int, generator: torch.Generator | None) -> torch.Tensor:
    """(M,) long counts -> (M, length) bool with exactly counts[k] True, uniformly placed, in row k."""
    keys = torch.rand((counts.shape[0], length), generator=generator)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    return ranks < counts[:, None]


def weighted_masked_nll(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    cont_ids: torch.Tensor,
    is_masked: torch.Tensor,
    *,
    mask_id: int,
    batch_size: int,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """(M, L) bool continuation masks -> (M,) float64 (L / n) * sum of -log p over the masked positions.

    `prompt_ids` (P,) and `cont_ids` (L,) are long on the model's device; forwards run `batch_size`
    masks at a time, and log-softmax is taken only at masked positions, in fp32.
    """
    device = prompt_ids.device
    P, L = prompt_ids.shape[0], cont_ids.shape[0]
    sequence = torch.cat([prompt_ids, cont_ids])
    out = []
    for start in range(0, is_masked.shape[0], batch_size):
        masks = is_masked[start:start + batch_size].to(device)
        rows = masks.shape[0]
        noisy = sequence.expand(rows, -1).clone()
        noisy[:, P:] = noisy[:, P:].masked_fill(masks, mask_id)
        is_prompt = torch.zeros_like(noisy, dtype=torch.bool)
        is_prompt[:, :P] = True
        logits = guided_logits(logits_fn, noisy, None, is_prompt, mask_id, cfg_scale)[:, P:]
        row, col = masks.nonzero(as_tuple=True)
        nll = F.cross_entropy(logits[row, col].float(), cont_ids[col], reduction="none").double()
        per_row = torch.zeros(rows, dtype=torch.float64, device=device).index_add_(0, row, nll)
        out.append(per_row * L / masks.sum(1).double())
    return torch.cat(out)


@torch.inference_mode()
def elbo_mc(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    cont_ids: torch.Tensor,
    *,
    mask_id: int,
    mc_num: int,
    batch_size: int,
    generator: torch.Generator,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """Stratified Monte-Carlo ELBO (float64 scalar) of (L,) long `cont_ids` after (P,) long `prompt_ids`.

    `generator` is a CPU generator: masks are drawn on the CPU, so a seed gives the same estimate on
    every device and in every process.
    """
    L = cont_ids.shape[0]
    if L == 0:
        raise ValueError("the continuation is empty: there is nothing to score")
    offset = float(torch.rand((), generator=generator, dtype=torch.float64))
    counts = stratified_mask_counts(mc_num, L, offset)
    is_masked = random_subset_masks(counts, L, generator)
    losses = weighted_masked_nll(
        logits_fn, prompt_ids, cont_ids, is_masked, mask_id=mask_id, batch_size=batch_size, cfg_scale=cfg_scale
    )
    return -losses.mean()


@torch.inference_mode()
def single_token_logprobs(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    candidate_ids: torch.Tensor,
    *,
    mask_id: int,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """(K,) float64 exact ELBO = log p(c | prompt, [mask]) of each one-token continuation c.

    `prompt_ids` (P,) and `candidate_ids` (K,) are long on the model's device; one forward on
    prompt + [mask] serves every candidate.
    """
    noisy = torch.cat([prompt_ids, prompt_ids.new_full((1,), mask_id)])[None]
    is_prompt = torch.ones_like(noisy, dtype=torch.bool)
    is_prompt[:, -1] = False
    logits = guided_logits(logits_fn, noisy, None, is_prompt, mask_id, cfg_scale)[0, -1]
    return torch.log_softmax(logits.double(), dim=-1)[candidate_ids]


def uses_exact_enumeration(length: int, mc_num: int) -> bool:
    """Whether enumerating all 2^L - 1 masks costs no more masked copies than `mc_num` samples."""
    return length <= 12 and 2**length - 1 <= mc_num


@torch.inference_mode()
def elbo(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    cont_ids: torch.Tensor,
    *,
    mask_id: int,
    mc_num: int,
    batch_size: int,
    generator: torch.Generator,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """The ELBO (float64 scalar) of (L,) long `cont_ids`: exact when 2^L - 1 <= mc_num, else `elbo_mc`."""
    if uses_exact_enumeration(cont_ids.shape[0], mc_num):
        return elbo_exact(logits_fn, prompt_ids, cont_ids, mask_id=mask_id, batch_size=batch_size, cfg_scale=cfg_scale)
    return elbo_mc(logits_fn, prompt_ids, cont_ids, mask_id=mask_id, mc_num=mc_num, batch_size=batch_size,
                   generator=generator, cfg_scale=cfg_scale)


@torch.inference_mode()
def elbo_exact(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    cont_ids: torch.Tensor,
    *,
    mask_id: int,
    batch_size: int = 64,
    cfg_scale: float = 0.0,
) -> torch.Tensor:
    """The ELBO (float64 scalar) by enumerating all 2^L - 1 masks, `batch_size` per forward; L <= 12."""
    L = cont_ids.shape[0]
    if not 1 <= L <= 12:
        raise ValueError(f"exact enumeration needs 1 <= L <= 12 continuation tokens, got {L}")
    subsets = [subset for n in range(1, L + 1) for subset in itertools.combinations(range(L), n)]
    is_masked = torch.zeros((len(subsets), L), dtype=torch.bool)
    for row, subset in enumerate(subsets):
        is_masked[row, list(subset)] = True
    losses = weighted_masked_nll(
        logits_fn, prompt_ids, cont_ids, is_masked, mask_id=mask_id, batch_size=batch_size, cfg_scale=cfg_scale
    )
    # E_n E_S: each n has probability 1 / L, each n-subset 1 / C(L, n).
    weights = torch.tensor([1.0 / math.comb(L, len(subset)) for subset in subsets], dtype=torch.float64)
    return -(losses * weights.to(losses.device)).sum() / L


def score_requests(
    logits_fn: LogitsFn,
    requests: list[tuple[list[int], list[int]]],
    *,
    mask_id: int,
    mc_num: int,
    batch_size: int,
    seeds: list[int],
    device: torch.device,
    cfg_scale: float = 0.0,
    on_scored: Callable[[int], None] | None = None,
) -> list[float]:
    """The ELBO of each (prompt ids, continuation ids) request, in order.

    One-token continuations are exact and share one forward per prompt (a multiple-choice question
    with answers " A".." D" costs one forward, not 4 x mc_num masked copies); longer ones are `elbo`
    (exact when 2^L - 1 <= mc_num, else stratified Monte-Carlo with masks drawn from a CPU generator
    seeded with the request's `seeds` entry). `on_scored(n)` is called as n more requests are done.
    """
    single: dict[tuple[int, ...], list[int]] = {}  # prompt -> indices of its one-token requests
    for index, (prompt, cont) in enumerate(requests):
        if len(cont) == 1:
            single.setdefault(tuple(prompt), []).append(index)
    elbos: list[float | None] = [None] * len(requests)
    for prompt, indices in single.items():
        candidates = torch.tensor([requests[i][1][0] for i in indices], device=device)
        logprobs = single_token_logprobs(
            logits_fn, torch.tensor(prompt, device=device), candidates, mask_id=mask_id, cfg_scale=cfg_scale,
        )
        for i, value in zip(indices, logprobs.tolist()):
            elbos[i] = value
        if on_scored is not None:
            on_scored(len(indices))
    for index, (prompt, cont) in enumerate(requests):
        if elbos[index] is not None:
            continue
        elbos[index] = float(elbo(
            logits_fn, torch.tensor(prompt, device=device), torch.tensor(cont, device=device), mask_id=mask_id,
            mc_num=mc_num, batch_size=batch_size, generator=torch.Generator().manual_seed(seeds[index]),
            cfg_scale=cfg_scale,
        ))
        if on_scored is not None:
            on_scored(1)
    return [float(value) for value in elbos]


def fills_greedily(logits_fn: LogitsFn, prompt_ids: torch.Tensor, cont: list[int], *, mask_id: int,
                   cfg_scale: float = 0.0) -> bool:
    """Whether filling all continuation masks after (P,) long `prompt_ids`, one most-confident token per
    step, gives `cont` (LLaDA's suffix_greedy_prediction; lm-eval's is_greedy)."""
    L = len(cont)
    config = LladaSamplerConfig(steps=L, gen_length=L, block_length=L, cfg_scale=cfg_scale)
    canvas = llada_generate(logits_fn, prompt_ids[None], config, mask_id=mask_id)
    return canvas[0, prompt_ids.shape[0]:].tolist() == cont
