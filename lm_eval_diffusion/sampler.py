"""Iterative unmasking samplers for masked diffusion LMs: ids in, ids out.

Two algorithms, each matching its model's own reference generation token for token when greedy:

- `llada_generate`: LLaDA's semi-autoregressive block sampler (`generate` in LLaDA's generate.py):
  a fixed per-block schedule (`num_transfer_tokens`), low-confidence or random remasking, optional
  unsupervised classifier-free guidance and EOS/EOT suppression.
- `dream_generate`: Dream's `diffusion_generate` (`_sample` in Dream's generation_utils.py): a time grid
  `linspace(1, eps, steps + 1)`, algorithms origin | maskgit_plus | topk_margin | entropy.

Every function here is pure tensor code: the model enters as `logits_fn(ids, attention_mask) -> logits`
with logits aligned so that `[:, i]` predicts token `i` (see `backbone.model_forward`; Dream's right
shift is applied there), and every special id is an argument.

Differences from the reference code, all deliberate:
- Per-row schedules everywhere. Dream's own `_sample` pools the masked positions of the whole batch
  into one top-k, so its output depends on the batch; ours equals Dream's at batch size 1 and does not
  depend on the batch.
- Softmax, argmax and confidences only over the positions that can be committed this step (the current
  block for LLaDA, the generated region for Dream), in fp32. LLaDA's code takes a float64 softmax over
  every canvas position; Dream's takes softmax and max in the model dtype. Both agree with ours except
  at rounding ties.
- Ties in confidence go to the lower position (stable sort); `torch.topk` leaves ties unspecified.
- The mask token is never a prediction (its logit is -inf). The reference code could commit a mask
  token, which then counts as still masked and breaks its own schedule; trained models give the mask
  token ~0 probability, so this only matters for untrained (test) models.
- Random draws (Gumbel noise, random remasking, Dream's origin transfers) come from `generator` in
  a fixed layout documented on each function, so a seeded run is reproducible and testable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

LogitsFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]

REMASKING = ("low_confidence", "random")
DREAM_ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
SAMPLERS = ("llada", "dream")


@dataclass(frozen=True)
class LladaSamplerConfig:
    """Settings of LLaDA's block sampler; `validate` names the bad value."""

    steps: int = 128  # forward passes for the whole generation, split evenly over the blocks
    gen_length: int = 128  # masked positions appended to the prompt
    block_length: int = 128  # blocks are filled left to right; gen_length must be a multiple
    temperature: float = 0.0  # 0: argmax; > 0: Gumbel-max in float64 as LLaDA's add_gumbel_noise
    remasking: str = "low_confidence"  # confidence = p(x0) (low_confidence) or uniform noise (random)
    cfg_scale: float = 0.0  # unsupervised classifier-free guidance: un + (s + 1)(cond - un)
    logits_eos_inf: bool = False  # forbid EOS: its logit is -inf before x0 and confidence
    confidence_eos_eot_inf: bool = False  # EOS and EOT logits -inf in the confidence softmax only

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        for name in ("steps", "gen_length", "block_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gen_length % self.block_length:
            raise ValueError(
                f"gen_length={self.gen_length} is not a multiple of block_length={self.block_length}"
            )
        num_blocks = self.gen_length // self.block_length
        if self.steps % num_blocks:
            raise ValueError(
                f"steps={self.steps} cannot be split evenly over gen_length/block_length = "
                f"{self.gen_length}/{self.block_length} = {num_blocks} blocks; use a multiple of {num_blocks}"
            )
        if self.remasking not in REMASKING:
            raise ValueError(f"remasking must be one of {', '.join(REMASKING)}; got {self.remasking!r}")
        if self.temperature < 0 or self.cfg_scale < 0:
            raise ValueError(f"temperature and cfg_scale must be >= 0; got {self.temperature}, {self.cfg_scale}")


@dataclass(frozen=True)
class DreamSamplerConfig:
    """Settings of Dream's `diffusion_generate`; `validate` names the bad value."""

    steps: int = 128  # forward passes
    gen_length: int = 128  # Dream's max_new_tokens
    temperature: float = 0.0  # 0: argmax; > 0: sample from softmax(logits / temperature)
    alg: str = "entropy"  # origin | maskgit_plus | topk_margin | entropy (Dream's eval default: entropy)
    alg_temp: float | None = None  # None or 0: top-k confidence; > 0: sample positions from softmax(conf / alg_temp)
    eps: float = 1e-3  # the time grid ends at eps instead of 0

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        for name in ("steps", "gen_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.alg not in DREAM_ALGS:
            raise ValueError(f"alg must be one of {', '.join(DREAM_ALGS)}; got {self.alg!r}")
        if self.temperature < 0 or (self.alg_temp is not None and self.alg_temp < 0):
            raise ValueError(f"temperature and alg_temp must be >= 0; got {self.temperature}, {self.alg_temp}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")


def num_transfer_tokens(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """(B,) long masked counts -> (B, steps) long: m // steps each step, plus one on the first m % steps.

    LLaDA's linear noise schedule (LLaDA paper Eq. 8) makes the expected number of tokens revealed per
    step constant; this is its `get_num_transfer_tokens`, without the per-row Python loop.
    """
    num_masked = num_masked.long()
    base = num_masked // steps
    remainder = num_masked % steps
    step_index = torch.arange(steps, device=num_masked.device)
    return base[:, None] + (step_index[None, :] < remainder[:, None]).long()


def top_k_per_row(scores: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(B, N) float scores, (B,) long k -> (B, N) bool marking each row's k highest (ties: lower index).

    One sort for the whole batch instead of a `torch.topk` per row, whose `k` would need a host sync.
    """
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(scores.shape[1], device=scores.device).expand_as(order))
    return ranks < k[:, None]


def guided_logits(
    logits_fn: LogitsFn,
    ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    is_prompt: torch.Tensor,
    mask_id: int,
    cfg_scale: float,
) -> torch.Tensor:
    """Logits (B, L, V) of (B, L) long `ids`; with cfg_scale > 0, unsupervised CFG (LLaDA paper Eq. 16).

    The unconditional pass sees the same canvas with every prompt position (`is_prompt`, (B, L) bool)
    masked; logits = un + (cfg_scale + 1) * (cond - un). Both passes share one batched forward.
    """
    if cfg_scale <= 0:
        return logits_fn(ids, attention_mask)
    unconditional = ids.masked_fill(is_prompt, mask_id)
    both_mask = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
    cond, uncond = logits_fn(torch.cat([ids, unconditional]), both_mask).chunk(2, dim=0)
    return uncond + (cfg_scale + 1) * (cond - uncond)


def _canvas(prompt_ids: torch.Tensor, attention_mask: torch.Tensor | None, gen_length: int, mask_id: int):
    """Prompt + gen_length masks, the attention mask over it (None: no padding), and the prompt positions."""
    B, P = prompt_ids.shape
    canvas = torch.cat([prompt_ids, prompt_ids.new_full((B, gen_length), mask_id)], dim=1)
    if attention_mask is None:
        full_mask = None
        is_prompt = torch.zeros_like(canvas, dtype=torch.bool)
        is_prompt[:, :P] = True
    else:
        attention_mask = attention_mask.to(prompt_ids.device).long()
        full_mask = torch.cat([attention_mask, attention_mask.new_ones((B, gen_length))], dim=1)
        # Pads stay pads in CFG's unconditional pass: they are invisible to attention either way.
        is_prompt = torch.cat([attention_mask.bool(), torch.zeros_like(canvas[:, P:], dtype=torch.bool)], dim=1)
    return canvas, full_mask, is_prompt


def _llada_pick(
    logits: torch.Tensor,
    config: LladaSamplerConfig,
    forbidden_ids: torch.Tensor,
    confidence_ids: torch.Tensor | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, V) logits of committable positions -> x0 (B, N) long and confidence (B, N) float32.

    `forbidden_ids` (the mask id, plus EOS under logits_eos_inf) get logit -inf before anything else.
    Works in place on an fp32 view of `logits`, which the caller must not reuse.
    """
    lf = logits.float()
    lf.index_fill_(-1, forbidden_ids, float("-inf"))
    if config.temperature > 0:
        # Gumbel-max as LLaDA's add_gumbel_noise, in float64 (arXiv:2409.02908: low precision hurts).
        u = torch.rand(lf.shape, dtype=torch.float64, device=lf.device, generator=generator)
        x0 = (lf.double().exp() / (-torch.log(u)) ** config.temperature).argmax(-1)
    else:
        x0 = lf.argmax(-1)
    if config.remasking == "random":
        return x0, torch.rand(x0.shape, device=x0.device, generator=generator)
    if confidence_ids is not None:
        lf.index_fill_(-1, confidence_ids, float("-inf"))
    confidence = (lf.gather(-1, x0[..., None]).squeeze(-1) - torch.logsumexp(lf, dim=-1)).exp()
    return x0, confidence


def _id_tensor(ids: Sequence[int], device: torch.device, what: str, option: str) -> torch.Tensor:
    ids = [int(i) for i in ids if i is not None]
    if not ids:
        raise ValueError(f"{option}=True needs the {what} id(s); none were given")
    return torch.tensor(sorted(set(ids)), device=device, dtype=torch.long)


@torch.inference_mode()
def llada_generate(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    config: LladaSamplerConfig,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    eos_ids: Sequence[int] = (),
    eot_ids: Sequence[int] = (),
    generator: torch.Generator | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """LLaDA's block sampler: (B, P) long prompts -> (B, P + gen_length) long canvas with no mask left.

    Per block and row, m = masks in the block at block start; step i of the block commits
    `num_transfer_tokens(m, steps_per_block)[:, i]` tokens: the most confident masked positions of the
    block. Each step is one forward over the whole canvas (two with cfg_scale > 0); committed tokens are
    never remasked. `attention_mask` (B, P) marks real prompt tokens under left padding (None: none).

    `eos_ids` are forbidden by `logits_eos_inf`; `confidence_eos_eot_inf` removes `eos_ids` and `eot_ids`
    from the confidence softmax (their probability becomes 0, the rest renormalise). LLaDA's own code
    writes `logits_with_noise[:, :, EOS] = logits[:, :, EOT] = -inf`, a chained assignment: its
    confidence softmax reads `logits`, so only EOT is suppressed there (EOS too only in versions whose
    add_gumbel_noise returns `logits` itself at temperature 0, making the two names one tensor). This
    implementation always suppresses both, as the option's name says.

    Random draws per step, from `generator`: temperature > 0 takes one float64 `rand((B, block_length, V))`
    for the Gumbel noise, then `remasking='random'` one float32 `rand((B, block_length))`.
    `on_step(step, canvas)` is called after every step with the global step index and the canvas.
    """
    config.validate()
    device = prompt_ids.device
    forbidden = torch.tensor([mask_id], device=device)
    if config.logits_eos_inf:
        forbidden = torch.cat([forbidden, _id_tensor(eos_ids, device, "EOS", "logits_eos_inf")])
    confidence_ids = None
    if config.confidence_eos_eot_inf and config.remasking == "low_confidence":
        confidence_ids = _id_tensor(list(eos_ids) + list(eot_ids), device, "EOS/EOT", "confidence_eos_eot_inf")
    canvas, full_mask, is_prompt = _canvas(prompt_ids, attention_mask, config.gen_length, mask_id)
    P = prompt_ids.shape[1]
    num_blocks = config.gen_length // config.block_length
    steps_per_block = config.steps // num_blocks
    step = 0
    for block in range(num_blocks):
        start, end = P + block * config.block_length, P + (block + 1) * config.block_length
        # The schedule is fixed at block start and stays on the device: no host sync in the loop.
        schedule = num_transfer_tokens((canvas[:, start:end] == mask_id).sum(1), steps_per_block)
        for i in range(steps_per_block):
            logits = guided_logits(logits_fn, canvas, full_mask, is_prompt, mask_id, config.cfg_scale)
            block_ids = canvas[:, start:end]
            is_masked = block_ids == mask_id
            x0, confidence = _llada_pick(logits[:, start:end], config, forbidden, confidence_ids, generator)
            confidence = confidence.masked_fill(~is_masked, float("-inf"))
            commit = top_k_per_row(confidence, schedule[:, i]) & is_masked
            canvas[:, start:end] = torch.where(commit, x0, block_ids)
            if on_step is not None:
                on_step(step, canvas)
            step += 1
    return canvas


def _dream_pick(
    logits: torch.Tensor, config: DreamSamplerConfig, mask_id: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, V) logits -> x0 (B, N) long and Dream's confidence (B, N) float32 for `config.alg`.

    The mask id gets logit -inf first. Works in place on an fp32 view of `logits`.
    """
    lf = logits.float()
    lf[..., mask_id] = float("-inf")
    if config.temperature > 0:
        lf = lf / config.temperature
        probs = torch.softmax(lf, dim=-1)
        x0 = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).view(probs.shape[:-1])
    else:
        x0 = lf.argmax(-1)
        probs = None
    if config.alg == "origin":
        return x0, lf.new_zeros(x0.shape)
    if config.alg == "entropy":
        probs = torch.softmax(lf, dim=-1) if probs is None else probs
        # Dream's negative entropy, with its 1e-10 inside the log.
        return x0, (probs * torch.log(probs + 1e-10)).sum(-1)
    log_norm = torch.logsumexp(lf, dim=-1)
    if config.alg == "maskgit_plus":
        return x0, (lf.gather(-1, x0[..., None]).squeeze(-1) - log_norm).exp()
    top2 = torch.topk(lf, 2, dim=-1).values
    return x0, (top2[..., 0] - log_norm).exp() - (top2[..., 1] - log_norm).exp()


@torch.inference_mode()
def dream_generate(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    config: DreamSamplerConfig,
    *,
    mask_id: int,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    on_step: StepCallback | None = None,
) -> torch.Tensor:
    """Dream's `diffusion_generate`: (B, P) long prompts -> (B, P + gen_length) long canvas, no mask left.

    With t, s = timesteps[i], timesteps[i + 1] of `linspace(1, eps, steps + 1)` (float32, on the device):
    - origin: each masked position is committed with probability 1 - s/t (1 on the last step), x0 from
      the logits;
    - maskgit_plus | topk_margin | entropy: confidence = max prob | top1 - top2 prob | negative entropy;
      each row commits int(m * (1 - s/t)) of its m masked positions (all m on the last step), the most
      confident ones (alg_temp > 0: drawn without replacement from softmax(confidence / alg_temp)).
    Random draws per step, from `generator`: temperature > 0 samples x0 with `multinomial` over the
    (B * gen_length) rows; origin then takes one `rand((B, gen_length))`; alg_temp > 0 one
    `rand((B, gen_length))` for Gumbel-top-k. `on_step(step, canvas)` follows every step. Only the
    generated region is unmasked: mask tokens inside a prompt stay (Dream's code would fill them too).
    """
    config.validate()
    canvas, full_mask, _ = _canvas(prompt_ids, attention_mask, config.gen_length, mask_id)
    P = prompt_ids.shape[1]
    timesteps = torch.linspace(1, config.eps, config.steps + 1, device=prompt_ids.device)
    for i in range(config.steps):
        gen = canvas[:, P:]
        is_masked = gen == mask_id
        logits = logits_fn(canvas, full_mask)
        x0, confidence = _dream_pick(logits[:, P:], config, mask_id, generator)
        last = i == config.steps - 1
        # 0-d float32 tensor arithmetic as in Dream, so the truncation below agrees with it exactly.
        ratio = 1 - timesteps[i + 1] / timesteps[i]
        if config.alg == "origin":
            u = torch.rand(is_masked.shape, device=canvas.device, generator=generator)
            commit = is_masked if last else is_masked & (u < ratio)
        else:
            num_masked = is_masked.sum(1)
            k = num_masked if last else (num_masked * ratio).long()
            confidence = confidence.masked_fill(~is_masked, float("-inf"))
            if config.alg_temp:
                u = torch.rand(is_masked.shape, device=canvas.device, generator=generator)
                # Gumbel-top-k draws k positions without replacement from softmax(confidence / alg_temp).
                confidence = confidence / config.alg_temp - torch.log(-torch.log(u.clamp_min(1e-20)))
            commit = top_k_per_row(confidence, k) & is_masked
        canvas[:, P:] = torch.where(commit, x0, gen)
        if on_step is not None:
            on_step(i, canvas)
    return canvas
