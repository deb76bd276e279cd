"""Pure tensor pieces of the DLLM-JEPA objective: forward masking, diffusion loss, pooling, JEPA loss.

No DeepSpeed, no files, every special id an argument. The trainer normalises over a whole optimizer
step by passing the step's denominators (`diffusion_denominator` summed over micro-batches and ranks);
called alone, each loss normalises over its own batch (for `row_mean`, eq. 2 on that batch).

    forward process     q(x_t | x_0, t): each maskable token -> mask with probability t     (eq. 1)
    diffusion loss      row_mean (eq. 2): per row, the mean of -log p(x_0^i | x_t) over its own
                        masked positions M_t; then the mean over rows
    JEPA loss           1 - cos(predictor(z_L), z_H), z = LayerNorm(mean of visible hidden states)

Eq. 2 is `row_mean` (the config default). `masked_mean` is the token mean (CE summed over every masked
token of the batch or step / their count), so a row with more masked tokens weighs more; `llada` is
LLaDA's SFT code. The collator masks at least one maskable position per row (`forward_mask`), so only
a row with no maskable position has no masked one.
"""

from __future__ import annotations

import hashlib

import torch
from torch.nn import functional as F

from dllm_jepa_train.config import LOSS_NORMS


def row_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator keyed by (seed, epoch, dataset row): views do not depend on batching or resume."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def draw_t(t_range: tuple[float, float], generator: torch.Generator) -> float:
    """One mask rate: the fixed value when lo == hi, else uniform in [lo, hi]."""
    lo, hi = t_range
    if lo == hi:
        return lo
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def forward_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    t: float,
    mask_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q(x_t | x_0, t) for one row: (L,) long ids, (L,) bool maskable -> (noisy_ids, is_masked).

    Each maskable position is masked independently with probability `t`; when that masks none, one
    maskable position drawn uniformly is masked, so every row with a response contributes to the loss.
    Draws from `generator`: one float32 `rand(L)`, then (only when nothing was masked) one `randint`.
    """
    is_masked = (torch.rand(input_ids.shape, generator=generator) < t) & maskable
    if not bool(is_masked.any()):
        positions = maskable.nonzero().flatten()
        if positions.numel():
            pick = positions[int(torch.randint(positions.numel(), (1,), generator=generator))]
            is_masked[pick] = True
    noisy_ids = torch.where(is_masked, torch.full_like(input_ids, mask_id), input_ids)
    return noisy_ids, is_masked


def draw_views(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    generators: list[torch.Generator],
    mask_id: int,
    t_context: tuple[float, float],
    t_target: tuple[float, float] | None,
) -> dict[str, torch.Tensor]:
    """Context view (rate t_L) and, when `t_target` is given, target view (rate t_H) of (B, L) ids.

    Row b draws only from `generators[b]`, in this order: t_L, the context mask, t_H, the target mask.
    The two views are independent draws of the forward process from the same clean row.
    Returns context_ids, context_masked, context_t (B,) and, with a target, target_ids, target_masked, target_t.
    """
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("context_ids", "context_masked", "context_t")}
    if t_target is not None:
        out.update({k: [] for k in ("target_ids", "target_masked", "target_t")})
    for row_ids, row_maskable, gen in zip(input_ids, maskable, generators):
        for view, t_spec in (("context", t_context), ("target", t_target)):
            if t_spec is None:
                continue
            t = draw_t(t_spec, gen)
            noisy, masked = forward_mask(row_ids, row_maskable, t, mask_id, gen)
            out[f"{view}_ids"].append(noisy)
            out[f"{view}_masked"].append(masked)
            out[f"{view}_t"].append(torch.tensor(t, dtype=torch.float32))
    return {k: torch.stack(v) for k, v in out.items()}


def diffusion_denominator(is_masked: torch.Tensor, norm: str) -> int:
    """The normaliser of `norm` for one batch: masked tokens (masked_mean) or rows (row_mean, llada).

    Every row counts for row_mean and llada, also one without a masked position.
    """
    if norm not in LOSS_NORMS:
        raise ValueError(f"loss norm must be one of {', '.join(LOSS_NORMS)}; got {norm!r}")
    return int(is_masked.sum()) if norm == "masked_mean" else int(is_masked.shape[0])


def diffusion_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    is_masked: torch.Tensor,
    t: torch.Tensor,
    answer_length: torch.Tensor,
    norm: str = "masked_mean",
    denominator: float | None = None,
) -> torch.Tensor:
    """Masked-token cross-entropy, a scalar fp32 tensor.

    logits (B, L, V) aligned so [:, i] predicts token i; input_ids (B, L) long clean tokens; is_masked
    (B, L) bool; t (B,) float mask rates; answer_length (B,) long maskable tokens per row.
    row_mean (eq. 2): per row, sum of CE over its masked positions / its number of masked positions
      (|M_t|, counted among the maskable ones); summed over rows / rows. A row with no masked position
      adds 0 and still counts as a row.
    masked_mean (the token mean, not eq. 2): sum of CE over masked positions / number of masked positions.
    llada (LLaDA's SFT code): per row, sum of CE / t divided by the row's answer length; summed over rows / rows.
    `denominator` replaces the batch's own normaliser (the trainer passes the whole optimizer step's).
    `norm` defaults to masked_mean here; the trainer passes `diffusion.loss_norm` (default row_mean).
    """
    if denominator is None:
        denominator = diffusion_denominator(is_masked, norm)
    if norm not in LOSS_NORMS:
        raise ValueError(f"loss norm must be one of {', '.join(LOSS_NORMS)}; got {norm!r}")
    # Only masked positions go to fp32: a (B, L, V) fp32 copy of the logits would cost 4 * B * L * V bytes.
    ce = F.cross_entropy(logits[is_masked].float(), input_ids[is_masked], reduction="none")
    if norm == "masked_mean":
        numerator = ce.sum()
    else:
        row = is_masked.nonzero()[:, 0]  # row of each entry of `ce` (both in row-major order)
        if norm == "row_mean":
            weight = 1.0 / is_masked.sum(dim=1).float()[row]  # a row with an entry has |M_t| >= 1
        else:
            weight = 1.0 / (t.float()[row] * answer_length.float()[row].clamp(min=1))
        numerator = (ce * weight).sum()
    return numerator / max(float(denominator), 1.0)


def pool_embeddings(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(B, L, D) hidden states, (B, L) bool keep -> (B, D) fp32: mean over kept tokens, then LayerNorm.

    `keep` marks the visible tokens (not masked, not padding). The LayerNorm has no parameters and runs
    in fp32. A row with no kept token pools to zeros (its cosine with anything is then 0).
    """
    weights = keep.to(hidden.dtype).unsqueeze(-1)
    summed = (hidden * weights).sum(dim=1, dtype=torch.float32)
    mean = summed / keep.sum(dim=1, keepdim=True).clamp(min=1).float()
    return F.layer_norm(mean, mean.shape[-1:])


def jepa_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, D) prediction and target -> (B,) fp32 per-row 1 - cos(prediction, target)."""
    return 1.0 - F.cosine_similarity(prediction.float(), target.float(), dim=-1, eps=1e-8)


def random_pairs(n: int, num_pairs: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(num_pairs,) long row indices (first, second) of `num_pairs` ordered pairs of distinct rows of n >= 2.

    Each pair is uniform over the n (n - 1) ordered pairs of distinct rows, drawn with replacement from a
    generator seeded with `seed`, so `num_pairs` may exceed the number of distinct pairs.
    """
    if n < 2 or num_pairs < 1:
        raise ValueError(f"random_pairs needs n >= 2 rows and num_pairs >= 1, got n={n}, num_pairs={num_pairs}")
    gen = torch.Generator().manual_seed(seed)
    first = torch.randint(n, (num_pairs,), generator=gen)
    offset = torch.randint(1, n, (num_pairs,), generator=gen)  # second != first, uniform over the others
    return first, (first + offset) % n


def collapse_stats(z: torch.Tensor, num_pairs: int = 5000, seed: int = 0, center: bool = False) -> dict[str, float]:
    """Collapse diagnostics of (N, D) embeddings (A.7).

    per_dim_std_mean: mean over dims of the std over rows (0 = every row identical).
    effective_rank: (sum of singular values)^2 / sum of squared singular values of z (1 = rank one).
    cosine_diversity: 1 - mean |cos| over exactly `num_pairs` random ordered pairs of distinct rows, drawn
    uniformly with replacement (seeded), as A.7's "5,000 random pairs" reads; with 100 rows there are only
    4,950 distinct pairs, so some pairs repeat (an all-pairs mean would be 4,950 pairs, not 5,000).
    The paper's statistics are uncentred: a shared mean direction alone makes rows parallel, so with few
    rows they cannot tell collapse from a common offset. `center` subtracts the mean row first (the
    per-dimension std is the same either way).
    """
    z = z.detach().float().cpu()
    if center:
        z = z - z.mean(dim=0, keepdim=True)
    n = z.shape[0]
    std = z.std(dim=0, unbiased=False).mean().item() if n > 1 else 0.0
    singular = torch.linalg.svdvals(z)
    squares = singular.pow(2).sum()
    effective_rank = (singular.sum().pow(2) / squares).item() if squares > 0 else 0.0
    if n < 2:
        diversity = 0.0
    else:
        first, second = random_pairs(n, num_pairs, seed)
        cos = F.cosine_similarity(z[first], z[second], dim=-1, eps=1e-8)
        diversity = (1.0 - cos.abs().mean()).item()
    return {"per_dim_std_mean": std, "effective_rank": effective_rank, "cosine_diversity": diversity}
