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
  a fixed layout documented on each function, so a seeded run is reproducible and testable. A list of
  generators, one per row, makes each row's draws independent of the batch it shares.

Two additions the reference loops do not have (both off unless asked for in the config):
- Early exit (`early_exit`): a row whose returned text is already decided leaves the canvas, so the
  batch shrinks. Decided means the first position of the generated region that is masked or a stop id
  (`stop_ids`: EOS and EOT, the ids the harness cuts at) is a stop id; since no committed token ever
  changes, every later step of that row could not change its text. The caller may add rows through
  `exit_check` (the harness's host-side `until` strings). Exact: each row's computation is its own
  (per-row schedules, attention masks, per-row generators), so a row's tokens are the same as without
  early exit in exact arithmetic; in bf16 a smaller batch can flip near-ties, as `--batch_size` can.
  Positions an exited row never committed stay `mask_id` in the returned canvas.
- Parallel threshold decoding (`threshold`, Fast-dLLM's idea, not the paper's protocol): each step
  commits every masked position of the current block (Dream: the generated region) whose p(x0)
  exceeds the threshold, and at least the most confident one; blocks end when they hold no mask, so
  the step count varies and `steps` is not used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

LogitsFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
StepCallback = Callable[[int, torch.Tensor], None]
# exit_check(rows, generated, is_done): rows (R,) long = each canvas row's index in the input batch,
# generated (R, gen_length) long, is_done (R,) bool from the stop-id rule -> (R,) bool rows that are done.
ExitCheck = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Generators = torch.Generator | Sequence[torch.Generator] | None

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
    early_exit: bool = False  # rows leave the canvas once their text is decided (checked at each block end)
    threshold: float | None = None  # None: the fixed schedule; else commit p(x0) > threshold (>= 1 per step)

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        _validate_threshold(self.threshold)
        if self.threshold is not None and self.remasking != "low_confidence":
            raise ValueError(f"threshold needs remasking='low_confidence' (it ranks by p(x0)); got {self.remasking!r}")
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
    early_exit: bool = False  # rows leave the canvas once their text is decided (checked every exit_check_every steps)
    # Each check is a host sync; Dream fills the whole canvas at once, so a row can end at any step.
    exit_check_every: int = 4
    threshold: float | None = None  # None: the time-grid schedule; else commit p(x0) > threshold (>= 1 per step)

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        _validate_threshold(self.threshold)
        if self.threshold is not None and self.alg_temp:
            raise ValueError(f"threshold ranks positions by p(x0); alg_temp={self.alg_temp} cannot apply")
        for name in ("steps", "gen_length", "exit_check_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.alg not in DREAM_ALGS:
            raise ValueError(f"alg must be one of {', '.join(DREAM_ALGS)}; got {self.alg!r}")
        if self.temperature < 0 or (self.alg_temp is not None and self.alg_temp < 0):
            raise ValueError(f"temperature and alg_temp must be >= 0; got {self.temperature}, {self.alg_temp}")
        if not 0 < self.eps < 1:
            raise ValueError(f"eps must be in (0, 1), got {self.eps}")


def _validate_threshold(threshold: float | None) -> None:
    if threshold is not None and not 0 < threshold < 1:
        raise ValueError(f"threshold must be None or in (0, 1), got {threshold}")


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


def _rand(shape: tuple[int, ...], generator: Generators, device: torch.device,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """torch.rand(shape); with one generator per row, row r is `rand((1, *shape[1:]))` from generator r."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, dtype=dtype, device=device)
    return torch.cat([torch.rand((1, *shape[1:]), generator=g, dtype=dtype, device=device) for g in generator])


def ends_at_stop(generated: torch.Tensor, mask_id: int, stop_ids: torch.Tensor) -> torch.Tensor:
    """(R, G) long generated region -> (R,) bool: its first masked-or-stop position exists and is a stop id.

    Such a row's text is decided: every position before the stop is committed and never changes, and
    the harness cuts at the first stop id. Only the generated region is read, so a prompt may contain
    EOS and the pad id may equal EOS.
    """
    is_stop = torch.isin(generated, stop_ids)
    is_end = is_stop | (generated == mask_id)
    first = is_end.int().argmax(1)  # argmax returns the first maximum
    return is_end.any(1) & is_stop.gather(1, first[:, None]).squeeze(1)


class _Rows:
    """The rows still being generated: canvas, attention mask, prompt positions, batch indices, generators.

    `drop` writes finished rows into the output and removes them from every per-row tensor.
    """

    def __init__(self, canvas: torch.Tensor, full_mask: torch.Tensor | None, is_prompt: torch.Tensor,
                 generator: Generators, row_forwards: torch.Tensor | None) -> None:
        if isinstance(generator, Sequence) and len(generator) != canvas.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {canvas.shape[0]} rows")
        if row_forwards is not None and row_forwards.shape != (canvas.shape[0],):
            raise ValueError(f"row_forwards must have shape ({canvas.shape[0]},), got {tuple(row_forwards.shape)}")
        self.canvas, self.full_mask, self.is_prompt, self.generator = canvas, full_mask, is_prompt, generator
        self.index = torch.arange(canvas.shape[0], device=canvas.device)
        self.row_forwards = row_forwards
        self.out: torch.Tensor | None = None  # allocated at the first drop

    def count_forward(self, rows_per_row: int) -> None:
        """Add one forward of every remaining row (`rows_per_row` model rows each: 2 under CFG)."""
        if self.row_forwards is not None:
            self.row_forwards[self.index] += rows_per_row

    def check_exit(self, P: int, mask_id: int, stop_ids: torch.Tensor, exit_check: ExitCheck | None) -> None:
        """Drop the rows whose text is decided (`ends_at_stop`, then `exit_check`); one host sync."""
        generated = self.canvas[:, P:]
        is_done = ends_at_stop(generated, mask_id, stop_ids)
        if exit_check is not None:
            is_done = exit_check(self.index, generated, is_done)
        if bool(is_done.any()):
            self.drop(is_done)

    def drop(self, is_done: torch.Tensor) -> None:
        if self.out is None:
            self.out = self.canvas.clone()
        self.out[self.index[is_done]] = self.canvas[is_done]
        keep = ~is_done
        self.canvas, self.is_prompt, self.index = self.canvas[keep], self.is_prompt[keep], self.index[keep]
        if self.full_mask is not None:
            self.full_mask = self.full_mask[keep]
        if isinstance(self.generator, Sequence):
            self.generator = [g for g, k in zip(self.generator, keep.tolist()) if k]

    @property
    def is_empty(self) -> bool:
        return self.canvas.shape[0] == 0

    def result(self) -> torch.Tensor:
        if self.out is None:
            return self.canvas
        self.out[self.index] = self.canvas
        return self.out


def _commit_mask(confidence: torch.Tensor, is_masked: torch.Tensor, k: torch.Tensor | None,
                 threshold: float | None) -> torch.Tensor:
    """(R, N) float confidence of committable positions, (R, N) bool masked -> (R, N) bool to commit.

    Schedule: the k (R,) most confident; threshold: every confidence > threshold plus the most confident.
    """
    confidence = confidence.masked_fill(~is_masked, float("-inf"))
    if threshold is None:
        return top_k_per_row(confidence, k) & is_masked
    best = top_k_per_row(confidence, torch.ones_like(confidence[:, 0], dtype=torch.long))
    return ((confidence > threshold) | best) & is_masked


def _llada_pick(
    logits: torch.Tensor,
    config: LladaSamplerConfig,
    forbidden_ids: torch.Tensor,
    confidence_ids: torch.Tensor | None,
    generator: Generators,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, V) logits of committable positions -> x0 (B, N) long and confidence (B, N) float32.

    `forbidden_ids` (the mask id, plus EOS under logits_eos_inf) get logit -inf before anything else.
    Works in place on an fp32 view of `logits`, which the caller must not reuse.
    """
    lf = logits.float()
    lf.index_fill_(-1, forbidden_ids, float("-inf"))
    if config.temperature > 0:
        # Gumbel-max as LLaDA's add_gumbel_noise, in float64 (arXiv:2409.02908: low precision hurts).
        u = _rand(tuple(lf.shape), generator, lf.device, torch.float64)
        x0 = (lf.double().exp() / (-torch.log(u)) ** config.temperature).argmax(-1)
    else:
        x0 = lf.argmax(-1)
    if config.remasking == "random":
        return x0, _rand(tuple(x0.shape), generator, x0.device)
    if confidence_ids is not None:
        lf.index_fill_(-1, confidence_ids, float("-inf"))
    confidence = (lf.gather(-1, x0[..., None]).squeeze(-1) - torch.logsumexp(lf, dim=-1)).exp()
    return x0, confidence


def _id_tensor(ids: Sequence[int], device: torch.device, what: str, option: str) -> torch.Tensor:
    ids = [int(i) for i in ids if i is not None]
    if not ids:
        raise ValueError(f"{option}=True needs the {what} id(s); none were given")
    return torch.tensor(sorted(set(ids)), device=device, dtype=torch.long)


def _stop_tensor(stop_ids: Sequence[int], early_exit: bool, device: torch.device) -> torch.Tensor:
    if early_exit:
        return _id_tensor(stop_ids, device, "stop (EOS/EOT)", "early_exit")
    return torch.zeros(0, dtype=torch.long, device=device)


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
    stop_ids: Sequence[int] = (),
    generator: Generators = None,
    on_step: StepCallback | None = None,
    exit_check: ExitCheck | None = None,
    row_forwards: torch.Tensor | None = None,
) -> torch.Tensor:
    """LLaDA's block sampler: (B, P) long prompts -> (B, P + gen_length) long canvas with no mask left.

    Per block and row, m = masks in the block at block start; step i of the block commits
    `num_transfer_tokens(m, steps_per_block)[:, i]` tokens: the most confident masked positions of the
    block. Each step is one forward over the whole canvas (two with cfg_scale > 0); committed tokens are
    never remasked. `attention_mask` (B, P) marks real prompt tokens under left padding (None: none).
    With `threshold`, a step commits every masked position of the block with p(x0) > threshold, and at
    least the most confident one; the block ends when it has no mask left (one host sync per step).

    `eos_ids` are forbidden by `logits_eos_inf`; `confidence_eos_eot_inf` removes `eos_ids` and `eot_ids`
    from the confidence softmax (their probability becomes 0, the rest renormalise). LLaDA's own code
    writes `logits_with_noise[:, :, EOS] = logits[:, :, EOT] = -inf`, a chained assignment: its
    confidence softmax reads `logits`, so only EOT is suppressed there (EOS too only in versions whose
    add_gumbel_noise returns `logits` itself at temperature 0, making the two names one tensor). This
    implementation always suppresses both, as the option's name says.

    Early exit (`config.early_exit`, needs `stop_ids`) is checked once per block, after its last step:
    LLaDA commits a block's trailing EOS early and its answer tokens last, so a row seldom ends before
    its block does, and a check per step would add a host sync per step for little. Exited rows keep
    `mask_id` where they never committed (see the module docstring). `row_forwards` (B,) long, if
    given, gets += 1 per forward each row takes part in (+= 2 under CFG).

    Random draws per step, from `generator` (or row r's from `generator[r]`): temperature > 0 takes one
    float64 `rand((B, block_length, V))` for the Gumbel noise, then `remasking='random'` one float32
    `rand((B, block_length))`. `on_step(step, canvas)` is called after every step with the global step
    index and the canvas of the rows still being generated.
    """
    config.validate()
    device = prompt_ids.device
    forbidden = torch.tensor([mask_id], device=device)
    if config.logits_eos_inf:
        forbidden = torch.cat([forbidden, _id_tensor(eos_ids, device, "EOS", "logits_eos_inf")])
    confidence_ids = None
    if config.confidence_eos_eot_inf and config.remasking == "low_confidence":
        confidence_ids = _id_tensor(list(eos_ids) + list(eot_ids), device, "EOS/EOT", "confidence_eos_eot_inf")
    stops = _stop_tensor(stop_ids, config.early_exit, device)
    rows = _Rows(*_canvas(prompt_ids, attention_mask, config.gen_length, mask_id), generator, row_forwards)
    P = prompt_ids.shape[1]
    num_blocks = config.gen_length // config.block_length
    steps_per_block = config.steps // num_blocks
    step = 0
    for block in range(num_blocks):
        start, end = P + block * config.block_length, P + (block + 1) * config.block_length
        schedule = None
        if config.threshold is None:
            # The schedule is fixed at block start and stays on the device: no host sync in the loop.
            schedule = num_transfer_tokens((rows.canvas[:, start:end] == mask_id).sum(1), steps_per_block)
        i = 0
        while (i < steps_per_block) if schedule is not None else bool((rows.canvas[:, start:end] == mask_id).any()):
            canvas = rows.canvas
            logits = guided_logits(logits_fn, canvas, rows.full_mask, rows.is_prompt, mask_id, config.cfg_scale)
            rows.count_forward(2 if config.cfg_scale > 0 else 1)
            block_ids = canvas[:, start:end]
            is_masked = block_ids == mask_id
            x0, confidence = _llada_pick(logits[:, start:end], config, forbidden, confidence_ids, rows.generator)
            k = None if schedule is None else schedule[:, i]
            commit = _commit_mask(confidence, is_masked, k, config.threshold)
            canvas[:, start:end] = torch.where(commit, x0, block_ids)
            if on_step is not None:
                on_step(step, canvas)
            step += 1
            i += 1
        if config.early_exit and block < num_blocks - 1:
            rows.check_exit(P, mask_id, stops, exit_check)
            if rows.is_empty:
                break
    return rows.result()


def _dream_pick(
    logits: torch.Tensor, config: DreamSamplerConfig, mask_id: int, generator: Generators
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N, V) logits -> x0 (B, N) long and Dream's confidence (B, N) float32 for `config.alg`.

    The mask id gets logit -inf first. Works in place on an fp32 view of `logits`. With `threshold`,
    the confidence is p(x0) (maskgit_plus's) whatever `alg` says.
    """
    lf = logits.float()
    lf[..., mask_id] = float("-inf")
    if config.temperature > 0:
        lf = lf / config.temperature
        probs = torch.softmax(lf, dim=-1)
        if generator is None or isinstance(generator, torch.Generator):
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
        else:
            flat = torch.cat([torch.multinomial(row, 1, generator=g) for row, g in zip(probs, generator)])
        x0 = flat.view(probs.shape[:-1])
    else:
        x0 = lf.argmax(-1)
        probs = None
    alg = "maskgit_plus" if config.threshold is not None else config.alg
    if alg == "origin":
        return x0, lf.new_zeros(x0.shape)
    if alg == "entropy":
        probs = torch.softmax(lf, dim=-1) if probs is None else probs
        # Dream's negative entropy, with its 1e-10 inside the log.
        return x0, (probs * torch.log(probs + 1e-10)).sum(-1)
    log_norm = torch.logsumexp(lf, dim=-1)
    if alg == "maskgit_plus":
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
    stop_ids: Sequence[int] = (),
    generator: Generators = None,
    on_step: StepCallback | None = None,
    exit_check: ExitCheck | None = None,
    row_forwards: torch.Tensor | None = None,
) -> torch.Tensor:
    """Dream's `diffusion_generate`: (B, P) long prompts -> (B, P + gen_length) long canvas, no mask left.

    With t, s = timesteps[i], timesteps[i + 1] of `linspace(1, eps, steps + 1)` (float32, on the device):
    - origin: each masked position is committed with probability 1 - s/t (1 on the last step), x0 from
      the logits;
    - maskgit_plus | topk_margin | entropy: confidence = max prob | top1 - top2 prob | negative entropy;
      each row commits int(m * (1 - s/t)) of its m masked positions (all m on the last step), the most
      confident ones (alg_temp > 0: drawn without replacement from softmax(confidence / alg_temp)).
    With `threshold`: every masked position with p(x0) > threshold, and at least the most confident one,
    until no mask is left (one host sync per step; `steps` and `alg` are not used).
    Early exit (`config.early_exit`, needs `stop_ids`): checked every `exit_check_every` steps; Dream
    fills the whole canvas at once, so a row can end at any step, and each check is a host sync.
    `row_forwards` (B,) long, if given, gets += 1 per forward each row takes part in.
    Random draws per step, from `generator` (or row r's from `generator[r]`): temperature > 0 samples x0
    with `multinomial` over the (B * gen_length) rows (row r: its gen_length rows); origin then takes one
    `rand((B, gen_length))`; alg_temp > 0 one `rand((B, gen_length))` for Gumbel-top-k. `on_step(step,
    canvas)` follows every step, with the canvas of the rows still being generated. Only the generated
    region is unmasked: mask tokens inside a prompt stay (Dream's code would fill them too).
    """
    config.validate()
    device = prompt_ids.device
    stops = _stop_tensor(stop_ids, config.early_exit, device)
    canvas, full_mask, is_prompt = _canvas(prompt_ids, attention_mask, config.gen_length, mask_id)
    rows = _Rows(canvas, full_mask, is_prompt, generator, row_forwards)
    P = prompt_ids.shape[1]
    timesteps = torch.linspace(1, config.eps, config.steps + 1, device=device)
    i = 0
    while (i < config.steps) if config.threshold is None else bool((rows.canvas[:, P:] == mask_id).any()):
        canvas = rows.canvas
        gen = canvas[:, P:]
        is_masked = gen == mask_id
        logits = logits_fn(canvas, rows.full_mask)
        rows.count_forward(1)
        x0, confidence = _dream_pick(logits[:, P:], config, mask_id, rows.generator)
        if config.threshold is not None:
            commit = _commit_mask(confidence, is_masked, None, config.threshold)
        elif config.alg == "origin":
            # 0-d float32 tensor arithmetic as in Dream, so the truncation below agrees with it exactly.
            ratio = 1 - timesteps[i + 1] / timesteps[i]
            u = _rand(tuple(is_masked.shape), rows.generator, device)
            commit = is_masked if i == config.steps - 1 else is_masked & (u < ratio)
        else:
            ratio = 1 - timesteps[i + 1] / timesteps[i]
            num_masked = is_masked.sum(1)
            k = num_masked if i == config.steps - 1 else (num_masked * ratio).long()
            if config.alg_temp:
                u = _rand(tuple(is_masked.shape), rows.generator, device)
                # Gumbel-top-k draws k positions without replacement from softmax(confidence / alg_temp).
                confidence = confidence / config.alg_temp - torch.log(-torch.log(u.clamp_min(1e-20)))
            commit = _commit_mask(confidence, is_masked, k, None)
        canvas[:, P:] = torch.where(commit, x0, gen)
        if on_step is not None:
            on_step(i, canvas)
        i += 1
        is_last = (i == config.steps) if config.threshold is None else False
        if config.early_exit and not is_last and i % config.exit_check_every == 0:
            rows.check_exit(P, mask_id, stops, exit_check)
            if rows.is_empty:
                break
    return rows.result()
