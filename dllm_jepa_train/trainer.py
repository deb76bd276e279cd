"""The training loop: engine, step-wide loss normalisation, EMA step, anchor, logging, checkpoints.

One optimizer step (`Trainer.train_step`), over `grad_accum` micro-batches:
    normalisers   the diffusion loss's (rows for row_mean (eq. 2) and llada, masked tokens for
                  masked_mean) and the JEPA loss's (rows) over the whole step, summed over micro-batches
                  and ranks before any backward, so 4 x 1 and 2 x 2 give the same update (torchtitan)
                  under fixed-length padding (`data.pad_to_max_length`); padded to each micro-batch's
                  longest row, the maskable EOS fill (no `data.use_attention_mask`) makes a row's views
                  and |M_t| depend on its micro-batch
    per micro-batch, in three parts (ijepa):
      1. target   EMA forward on the target view, no grad -> z_H               (skipped at lambda = 0)
      2. context  online forward on the context view -> logits, z_L, predictor(z_L)
      3. loss     L_diff / step normaliser + lambda * sum over rows (1 - cos) / step rows
    backward, engine step (the optimizer steps on the last micro-batch), then the EMA update.

Engines: `DeepSpeedEngine` (ZeRO 0-2, bf16) and `TorchEngine` (one process, fp32 or bf16 autocast),
with the same semantics: the loss handed to `backward` is the step-normalised loss, and the gradient
the optimizer sees is its sum over micro-batches (and ranks). DeepSpeed divides each micro-batch
loss by the accumulation steps and averages gradients over ranks; `DeepSpeedEngine.backward` passes
`scale_wrt_gas=False` and multiplies by the world size to undo both.

L2-to-base anchor (`anchor.l2_lambda`): a hook on every backbone parameter adds
l2_lambda * (theta - theta_base) to the gradient of the last micro-batch of each step only, so the
optimizer sees g + l2_lambda * (theta - theta_base) once per step. Tensor hooks run before the
gradient is accumulated, i.e. before ZeRO-2's own hooks copy and free `.grad`; every rank adds the
same term and DeepSpeed's rank average leaves it unchanged. theta_base is a copy of the initial
weights in the parameter dtype (+2 B/param under bf16). Gradient clipping sees the sum.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import resource
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from dllm_jepa_train import checkpoint as ckpt
from dllm_jepa_train.config import DataConfig, TrainConfig, deepspeed_config, resolve_batch, save_config, t_setting
from dllm_jepa_train.data import DiffusionCollator, StepPlan, dev_slice, load_examples, tokenize_examples
from dllm_jepa_train.jepa import EmaTarget, OnlineModel, backbone_heads, backbone_width, build_predictor
from dllm_jepa_train.toy import toy_name
from dllm_jepa_train.objectives import collapse_stats, diffusion_denominator, diffusion_loss, jepa_loss

log = logging.getLogger("dllm_jepa_train")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the batch."""


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def cosine_lr(step: int, total_steps: int, warmup_ratio: float) -> float:
    """LR multiplier of optimizer step `step` (0-based): linear warmup, then cosine to 0 at `total_steps`.

    Warmup is (step + 1) / warmup_steps, so the first step already moves the weights.
    """
    warmup = math.ceil(warmup_ratio * total_steps) if warmup_ratio > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on matrices, none on biases and norm weights (every 1-D parameter)."""
    decay, no_decay = [], []
    for p in module.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def enable_gradient_checkpointing(model: torch.nn.Module) -> str:
    """Turn on activation checkpointing: the HF switch where supported, else LLaDA's own; name the one used."""
    if getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return "hf"
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "set_activation_checkpointing"):
        import sys

        # LLaDA's strategy enum lives in its (remote) modeling module; the name is LLaDA's own.
        strategy = sys.modules[type(inner).__module__].ActivationCheckpointingStrategy.whole_layer
        inner.set_activation_checkpointing(strategy)
        return "llada"
    raise ValueError(
        f"model.gradient_checkpointing: {type(model).__name__} supports neither the HF switch nor "
        "set_activation_checkpointing; set model.gradient_checkpointing false"
    )


class L2Anchor:
    """Adds strength * (theta - theta_base) to each parameter's gradient while `armed` (see module doc)."""

    def __init__(self, params: list[torch.nn.Parameter], strength: float) -> None:
        self.strength = strength
        self.armed = False
        self.base = [p.detach().clone() for p in params]
        self.handles = [p.register_hook(self._hook(p, base)) for p, base in zip(params, self.base)]

    def _hook(self, param: torch.nn.Parameter, base: torch.Tensor):
        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            if not self.armed:
                return None
            return grad + self.strength * (param.detach() - base).to(grad.dtype)

        return hook


class TorchEngine:
    """One process, plain torch: accumulate `.grad`, then clip, AdamW step and LR step on the boundary."""

    world_size = 1

    def __init__(self, module, optimizer, scheduler, grad_accum: int, grad_clip: float, autocast_dtype=None):
        self.module = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.grad_accum = grad_accum
        self.grad_clip = grad_clip
        self.autocast_dtype = autocast_dtype
        self.micro_steps = 0
        self.grad_norm = float("nan")

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def __call__(self, *args):
        device_type = self.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            return self.module(*args)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum:
            return
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        self.grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        """The learning rate the next optimizer step uses."""
        return self.optimizer.param_groups[0]["lr"]

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        torch.save({"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "micro_steps": self.micro_steps}, path / "state.pt")

    def load(self, path: Path) -> None:
        state = torch.load(path / "state.pt", map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = state["micro_steps"]


class DeepSpeedEngine:
    """A DeepSpeed engine behind the TorchEngine interface (see the module doc for the loss scaling)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.module = engine.module
        self.world_size = engine.dp_world_size

    @property
    def device(self) -> torch.device:
        return self.engine.device

    def __call__(self, *args):
        return self.engine(*args)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss * self.world_size, scale_wrt_gas=False)

    def step(self) -> None:
        self.engine.step()

    @property
    def grad_norm(self) -> float:
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def save(self, path: Path) -> None:
        self.engine.save_checkpoint(str(path), tag="engine", save_latest=False)

    def load(self, path: Path) -> None:
        load_path, _ = self.engine.load_checkpoint(str(path), tag="engine", load_lr_scheduler_states=True)
        if load_path is None:
            raise FileNotFoundError(f"DeepSpeed found no checkpoint under {path}")


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def _all_gather_rows(z: torch.Tensor) -> torch.Tensor:
    """(N, D) rows of every rank stacked in rank order: (world * N, D); every rank has the same N."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return z
    parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, z.contiguous())
    return torch.cat(parts)


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def _peak_memory_gb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux reports KiB


def memory_estimate(
    num_online: int, num_ema: int, param_bytes: int, engine: str, zero_stage: int, world_size: int,
    shadow: bool, anchor: bool, num_anchor: int,
) -> dict[str, float]:
    """Per-rank GB of weights, gradients, optimizer state, EMA and anchor base (activations excluded).

    DeepSpeed bf16: bf16 weights and grads, fp32 master + Adam m, v (12 B/param); ZeRO-1 divides the
    optimizer state and ZeRO-2 also the gradients by the world size. Torch engine: fp32 weights,
    grads and Adam m, v.
    """
    if engine == "torch":
        grads, optim = 4 * num_online, 8 * num_online
        weights = 4 * num_online
    else:
        weights = param_bytes * num_online
        grads = param_bytes * num_online / (world_size if zero_stage >= 2 else 1)
        master = 4 * num_online if param_bytes != 4 else 0
        optim = (master + 8 * num_online) / (world_size if zero_stage >= 1 else 1)
    ema = 4 * num_ema + (param_bytes * num_ema if shadow and param_bytes != 4 else 0)
    base = param_bytes * num_anchor if anchor else 0
    out = {"weights": weights, "gradients": grads, "optimizer": optim, "ema": ema, "anchor_base": base}
    out = {k: v / 1e9 for k, v in out.items()}
    out["total"] = sum(out.values())
    return out


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0


def init_distributed(engine: str) -> DistInfo:
    """DeepSpeed: join (or, under plain python, create) the process group; torch: one process."""
    if engine == "torch":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ValueError("run.engine torch runs one process; use run.engine deepspeed for several")
        return DistInfo()
    import deepspeed

    # Plain `python main.py` has no launcher: run as a one-process group.
    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    if not dist.is_initialized():
        deepspeed.init_distributed()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


class _TqdmHandler(logging.StreamHandler):
    """Console lines written through tqdm, so they do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise into the training loop
            self.handleError(record)


def setup_logging(output_dir: Path, rank: int) -> None:
    """Rank 0 logs INFO to the console and <output_dir>/train.log; other ranks only warnings."""
    logger = logging.getLogger("dllm_jepa_train")
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = _TqdmHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if rank == 0:
        file = logging.FileHandler(output_dir / "train.log")
        file.setFormatter(fmt)
        logger.addHandler(file)


class Trainer:
    """Holds the engine, EMA target, anchor, data plan and collator; `train` runs the loop."""

    def __init__(self, cfg: TrainConfig, backbone, tokenizer, spec, rows: list[dict], dist_info: DistInfo,
                 source: str, device: torch.device) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.spec = spec
        self.rows = rows
        self.dist = dist_info
        self.source = source
        self.output_dir = Path(cfg.run.output_dir)
        self.lam = cfg.jepa.lambda_
        self.use_jepa = self.lam > 0
        self.compute_dtype = torch.bfloat16 if cfg.run.precision == "bf16" else torch.float32

        lengths = (tuple(len(r["prompt_ids"]) + len(r["response_ids"]) for r in rows)
                   if cfg.data.group_by_length else None)
        self.plan = StepPlan(len(rows), cfg.optim.micro_batch_size, cfg.optim.grad_accum,
                             dist_info.world_size, dist_info.rank, cfg.run.seed, lengths)
        if self.plan.steps_per_epoch < 1:
            raise ValueError(f"{len(rows)} rows cannot fill one optimizer step of {self.plan.rows_per_step} rows "
                             "(optim.micro_batch_size x optim.grad_accum x world size)")
        self.total_steps = cfg.optim.max_steps or cfg.optim.epochs * self.plan.steps_per_epoch
        self.collator = DiffusionCollator(
            mask_id=spec.mask_id, eos_id=spec.eos_id, pad_id=spec.pad_id,
            t_context=cfg.diffusion.t_context, t_target=cfg.jepa.t_target if self.use_jepa else None,
            seed=cfg.run.seed, max_length=cfg.data.max_length, pad_to_max_length=cfg.data.pad_to_max_length,
            use_attention_mask=cfg.data.use_attention_mask,
        )

        self.checkpointing = enable_gradient_checkpointing(backbone) if cfg.model.gradient_checkpointing else "off"
        backbone.train()
        predictor = None
        if self.use_jepa:
            torch.manual_seed(cfg.run.seed)  # the predictor's init does not depend on what ran before
            depth = cfg.jepa.predictor_depth
            heads = (cfg.jepa.predictor_heads or backbone_heads(backbone.config)) if depth else 0
            predictor = build_predictor(backbone_width(backbone.config), depth, heads,
                                        cfg.jepa.predictor_mlp_ratio).to(device=device, dtype=backbone.dtype)
        module = OnlineModel(backbone, spec, predictor)
        self.engine = self._build_engine(module, device)
        online = self.engine.module
        # The EMA is built after the engine so it copies the weights in their training dtype and device.
        self.target = (EmaTarget(online.backbone, spec, cfg.jepa.ema_decay, self.compute_dtype, cfg.jepa.ema_shadow)
                       if self.use_jepa else None)
        self.anchor = (L2Anchor(list(online.backbone.parameters()), cfg.anchor.l2_lambda)
                       if cfg.anchor.l2_lambda > 0 else None)
        self.global_step = 0
        self.collapse_buffer = {name: torch.empty(0) for name in ("z_context", "z_target")}
        self.tensorboard = self._tensorboard()
        self._log_memory(online)

    # ----------------------------------------------------------------------------------- setup
    def _build_engine(self, module: OnlineModel, device: torch.device):
        cfg = self.cfg
        groups = param_groups(module, cfg.optim.weight_decay)
        total = self.total_steps

        def schedule(optimizer):
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda step: cosine_lr(step, total, cfg.optim.warmup_ratio))

        adamw = {"lr": cfg.optim.lr, "betas": tuple(cfg.optim.betas), "eps": cfg.optim.eps}
        if cfg.run.engine == "torch":
            optimizer = torch.optim.AdamW(groups, **adamw)
            autocast = self.compute_dtype if self.compute_dtype != torch.float32 else None
            return TorchEngine(module, optimizer, schedule(optimizer), cfg.optim.grad_accum, cfg.optim.grad_clip,
                               autocast)
        import deepspeed

        ds_config = deepspeed_config(cfg)
        # torch.optim.AdamW needs no JIT-built op; on GPU a user JSON "optimizer" block (e.g. FusedAdam)
        # replaces it, and then DeepSpeed builds the optimizer from these same parameter groups.
        client = None if "optimizer" in ds_config else torch.optim.AdamW(groups, **adamw)
        engine, _, _, _ = deepspeed.initialize(
            model=module, optimizer=client, model_parameters=groups if client is None else None,
            lr_scheduler=schedule, config=ds_config,
        )
        return DeepSpeedEngine(engine)

    def _tensorboard(self):
        if not self.cfg.run.tensorboard or self.dist.rank != 0:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            warnings.warn("run.tensorboard is true but tensorboard is not installed (pip install tensorboard); "
                          "metrics go to metrics.jsonl only", stacklevel=2)
            return None
        return SummaryWriter(str(self.output_dir / "tensorboard"))

    def _log_memory(self, online: OnlineModel) -> None:
        num_online = sum(p.numel() for p in online.parameters())
        num_backbone = sum(p.numel() for p in online.backbone.parameters())
        est = memory_estimate(
            num_online, self.target.num_parameters() if self.target else 0,
            torch.finfo(next(online.parameters()).dtype).bits // 8, self.cfg.run.engine, self.cfg.run.zero_stage,
            self.dist.world_size, self.cfg.jepa.ema_shadow, self.anchor is not None, num_backbone,
        )
        self.memory = est
        parts = ", ".join(f"{k} {v:.3f}" for k, v in est.items())
        num_predictor = num_online - num_backbone
        log.info("parameters: backbone %d, predictor %d, EMA %d | gradient checkpointing: %s",
                 num_backbone, num_predictor, self.target.num_parameters() if self.target else 0, self.checkpointing)
        log.info("memory estimate per rank (GB, %d ranks, activations excluded): %s", self.dist.world_size, parts)

    # ------------------------------------------------------------------------------- one step
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        device = self.engine.device
        return {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def train_step(self, batches: list[dict[str, torch.Tensor]], step: int, epoch: int) -> dict[str, Any]:
        """One optimizer step over this rank's micro-batches; returns the step's metrics (all ranks summed)."""
        cfg = self.cfg
        norm = cfg.diffusion.loss_norm
        # Step-wide normalisers: every micro-batch and rank, counted before any backward. For row_mean
        # each micro-batch's numerator is its sum over rows of (row CE sum / row masked count), and the
        # denominator is the step's rows, so the step's loss is eq. 2's mean over all of its rows.
        counts = torch.tensor([
            sum(diffusion_denominator(b["context_masked"], norm) for b in batches),
            sum(b["input_ids"].shape[0] for b in batches),
            sum(b["input_ids"].numel() for b in batches),
        ], dtype=torch.float64, device=self.engine.device)
        diff_denominator, num_rows, num_tokens = _all_reduce_sum(counts).tolist()
        lr = self.engine.lr()  # the rate this step's update uses (the scheduler steps with the optimizer)
        totals = torch.zeros(3, dtype=torch.float64, device=self.engine.device)
        z_contexts, z_targets = [], []
        for i, batch in enumerate(batches):
            batch = self._to_device(batch)
            attention_mask = batch.get("attention_mask")
            # 1. target: EMA encoder on the target view, no grad
            z_target = None
            if self.use_jepa:
                keep_target = ~batch["target_masked"] & ~batch["is_padding"]
                z_target = self.target.encode(batch["target_ids"], keep_target, attention_mask)
            # 2. context: online backbone (+ predictor) on the context view
            keep_context = ~batch["context_masked"] & ~batch["is_padding"]
            logits, z_context, prediction = self.engine(batch["context_ids"], keep_context, attention_mask)
            # 3. loss, normalised over the whole optimizer step
            loss_diff = diffusion_loss(logits, batch["input_ids"], batch["context_masked"], batch["context_t"],
                                       batch["answer_length"], norm, denominator=diff_denominator)
            loss = loss_diff
            loss_jepa = torch.zeros((), device=loss.device)
            if self.use_jepa:
                loss_jepa = jepa_loss(prediction, z_target).sum() / num_rows
                loss = loss_diff + self.lam * loss_jepa
                z_contexts.append(z_context.detach())
                z_targets.append(z_target)
            if step == cfg.run.debug_nan_at_step:
                loss = loss + float("nan")
            parts = _all_reduce_sum(torch.stack([loss_diff.detach(), loss_jepa.detach(), loss.detach()]).double())
            # Checked before the backward so NaN never reaches the weights; a host sync per micro-batch.
            if not bool(torch.isfinite(parts).all()):
                raise NonFiniteLossError(
                    f"non-finite loss at optimizer step {step} (epoch {epoch}, micro-batch {i}, "
                    f"rows {batch['index'].tolist()} on rank {self.dist.rank}): loss_diff={parts[0].item()}, "
                    f"loss_jepa={parts[1].item()}; last good checkpoint: {self._latest_checkpoint()}")
            totals += parts
            if self.anchor is not None:
                self.anchor.armed = i == len(batches) - 1
            self.engine.backward(loss)
            if step == cfg.run.debug_sigkill_at_step and i == 0:
                os.kill(os.getpid(), signal.SIGKILL)  # testing resume: die mid-step, after a backward
            self.engine.step()
        if self.anchor is not None:
            self.anchor.armed = False
        if self.target is not None:
            self.target.update()  # after the optimizer step: the EMA follows the new online weights
        loss_diff, loss_jepa, loss = totals.tolist()
        metrics = {"loss": loss, "loss_diff": loss_diff,
                   "loss_jepa": loss_jepa if self.use_jepa else None,
                   "cosine": 1.0 - loss_jepa if self.use_jepa else None, "lr": lr, "tokens": num_tokens}
        if self.use_jepa and cfg.jepa.collapse_every:
            collapse = self._collapse(step, torch.cat(z_contexts), torch.cat(z_targets))
            if collapse is not None:
                metrics["collapse"] = collapse
        return metrics

    def _collapse(self, step: int, z_context: torch.Tensor, z_target: torch.Tensor) -> dict | None:
        """Feed the rolling collapse buffer; on a logging step (rank 0) its statistics, else None.

        The buffer holds the last `jepa.collapse_window` pooled vectors of each view, gathered from every
        rank, over as many recent steps as that takes (so they come from slightly different weights). Only
        the steps that reach into the next logging step's window gather: an all_gather of (rows, D) fp32.
        """
        every, window = self.cfg.jepa.collapse_every, self.cfg.jepa.collapse_window
        steps_needed = math.ceil(window / self.plan.rows_per_step)
        if (every - step % every) % every >= steps_needed:
            return None
        for name, z in (("z_context", z_context), ("z_target", z_target)):
            gathered = _all_gather_rows(z.detach().float())
            if self.dist.rank == 0:
                self.collapse_buffer[name] = torch.cat([self.collapse_buffer[name], gathered.cpu()])[-window:]
        if step % every or self.dist.rank != 0:
            return None
        out: dict[str, Any] = {"window": int(self.collapse_buffer["z_context"].shape[0]),
                               "ranks": self.dist.world_size}
        for name, z in self.collapse_buffer.items():
            stats = collapse_stats(z, seed=step)
            centred = collapse_stats(z, seed=step, center=True)
            out[name] = {**stats, "centred_effective_rank": centred["effective_rank"],
                         "centred_cosine_diversity": centred["cosine_diversity"]}
        return out

    def _latest_checkpoint(self) -> str:
        pointer = ckpt.checkpoint_root(self.output_dir) / ckpt.LATEST
        return str(pointer.parent / pointer.read_text().strip()) if pointer.is_file() else "none"

    def step_batches(self, step_index: int) -> tuple[int, list[dict[str, torch.Tensor]]]:
        """(epoch, collated micro-batches) of 0-based optimizer step `step_index` for this rank."""
        epoch, in_epoch = divmod(step_index, self.plan.steps_per_epoch)
        micro = self.plan.micro_batches(epoch, in_epoch)
        return epoch, [self.collator([{**self.rows[i], "index": i, "epoch": epoch} for i in m]) for m in micro]

    # ------------------------------------------------------------------------- checkpointing
    def jepa_meta(self) -> dict:
        cfg = self.cfg
        return {"lambda": self.lam, "predictor_depth": cfg.jepa.predictor_depth,
                "predictor_heads": cfg.jepa.predictor_heads, "predictor_mlp_ratio": cfg.jepa.predictor_mlp_ratio,
                "ema_decay": cfg.jepa.ema_decay, "ema_has_output_head": self.target.has_head if self.target else None,
                "t_context": t_setting(cfg.diffusion.t_context), "t_target": t_setting(cfg.jepa.t_target),
                "step": self.global_step}

    def export(self, out_dir: Path) -> Path:
        """Rank 0 writes the HF checkpoint + jepa/ (weights are whole on every rank under ZeRO <= 2)."""
        if self.dist.rank == 0:
            online = self.engine.module
            ckpt.export_checkpoint(out_dir, online.backbone, self.tokenizer, self.source, self.cfg.model.revision,
                                   online.predictor, self.target.state_dict() if self.target else None,
                                   self.jepa_meta())
            log.info("exported %s", out_dir)
        _barrier()
        return out_dir

    def save_checkpoint(self) -> None:
        step = self.global_step
        stage = ckpt.staging_dir(self.output_dir, step)
        epoch, in_epoch = divmod(step, self.plan.steps_per_epoch)
        state = {"global_step": step, "epoch": epoch, "step_in_epoch": in_epoch, "seed": self.cfg.run.seed,
                 "total_steps": self.total_steps, "world_size": self.dist.world_size}
        self.engine.save(stage / "engine")
        ckpt.write_local_state(stage, self.dist.rank, state, self.target.state_dict() if self.target else None)
        _barrier()
        if self.dist.rank == 0:
            path = ckpt.publish_checkpoint(self.output_dir, step, self.cfg.run.save_total_limit)
            log.info("checkpoint %s", path)
        _barrier()

    def resume(self, path: Path) -> None:
        self.engine.load(path / "engine")
        state, ema_state = ckpt.read_local_state(path, self.dist.rank)
        if state["world_size"] != self.dist.world_size:
            raise ValueError(f"{path} was written with {state['world_size']} ranks; this run has "
                             f"{self.dist.world_size} (the data order depends on it)")
        if self.target is not None:
            if ema_state is None:
                raise FileNotFoundError(f"{path} has no ema.safetensors but this run uses the JEPA loss")
            self.target.load_state_dict(ema_state)
        self.global_step = int(state["global_step"])
        self._truncate_metrics()
        log.info("resumed from %s at step %d (epoch %d, step %d in epoch)", path, self.global_step,
                 state["epoch"], state["step_in_epoch"])

    def _truncate_metrics(self) -> None:
        """Drop metrics lines past the resumed step (written by the run that was killed)."""
        path = self.output_dir / "metrics.jsonl"
        if self.dist.rank != 0 or not path.is_file():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if json.loads(line)["step"] <= self.global_step]
        path.write_text("".join(line + "\n" for line in kept))

    # ---------------------------------------------------------------------------------- loop
    def train(self) -> Path:
        """Run to `total_steps` (resuming if asked); export `<output_dir>/final/`; return its path."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        resume_dir = ckpt.find_resume_dir(self.output_dir, cfg.run.resume)
        if resume_dir is not None:
            self.resume(resume_dir)
        elif cfg.run.resume:
            log.info("run.resume=%s: no checkpoint in %s, starting fresh", cfg.run.resume, self.output_dir)
        metrics_file = self.output_dir / "metrics.jsonl"
        bar = tqdm(total=self.total_steps, initial=self.global_step, disable=self.dist.rank != 0,
                   desc="train", unit="step", dynamic_ncols=True)
        device = self.engine.device
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        while self.global_step < self.total_steps:
            start = time.perf_counter()
            epoch, batches = self.step_batches(self.global_step)
            metrics = self.train_step(batches, self.global_step + 1, epoch)
            self.global_step += 1
            seconds = time.perf_counter() - start
            tokens = metrics.pop("tokens")
            record = {"step": self.global_step, "epoch": epoch, **metrics, "grad_norm": self.engine.grad_norm, "tokens_per_s": tokens / seconds,
                      "seconds_per_step": seconds, "peak_memory_gb": _peak_memory_gb(device)}
            if self.dist.rank == 0:
                with metrics_file.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                self._log_step(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
                bar.update(1)
            if cfg.run.save_every and self.global_step % cfg.run.save_every == 0 \
                    and self.global_step < self.total_steps:
                self.save_checkpoint()
            if cfg.run.save_epochs and self.global_step % self.plan.steps_per_epoch == 0:
                self.export(self.output_dir / f"epoch_{self.global_step // self.plan.steps_per_epoch}")
        bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        return self.export(self.output_dir / "final")

    def _log_step(self, record: dict) -> None:
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tensorboard.add_scalar(key, value, record["step"])
        if record["step"] % self.cfg.run.log_every and record["step"] != self.total_steps:
            return
        jepa = (f" | jepa {record['loss_jepa']:.4f} | cos {record['cosine']:.4f}"
                if record["loss_jepa"] is not None else "")
        log.info("step %d/%d | loss %.4f | diff %.4f%s | lr %.3e | gnorm %.3f | %.0f tok/s | %.3f s/step | "
                 "peak %.2f GB", record["step"], self.total_steps, record["loss"], record["loss_diff"], jepa,
                 record["lr"], record["grad_norm"], record["tokens_per_s"], record["seconds_per_step"],
                 record["peak_memory_gb"])
        if "collapse" in record:
            collapse = record["collapse"]
            for name, short in (("z_context", "z_L"), ("z_target", "z_H")):
                stats = collapse[name]
                log.info("collapse %s (window %d vectors, %d rank(s)): per-dim std %.4f | uncentred (paper): "
                         "effective rank %.2f, cosine diversity %.4f | centred: effective rank %.2f, cosine "
                         "diversity %.4f", short, collapse["window"], collapse["ranks"], stats["per_dim_std_mean"],
                         stats["effective_rank"], stats["cosine_diversity"], stats["centred_effective_rank"],
                         stats["centred_cosine_diversity"])


# ------------------------------------------------------------------------------------ building
def _prepare_toy_inputs(cfg: TrainConfig, output_dir: Path, rank: int) -> tuple[DataConfig, Path | None, str]:
    """(data config, data dir, checkpoint) with `toy:` names resolved by the toy package (rank 0 writes).

    Real names pass through unchanged; `dllm_jepa_train.toy` is imported only when a toy name is used.
    """
    data, data_dir = cfg.data, (Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    pretrained = cfg.model.pretrained
    task, family = toy_name(data.source), toy_name(pretrained)
    if task is None and family is None:
        return data, data_dir, pretrained
    from dllm_jepa_train.toy.inputs import prepare_data, prepare_model

    if task is not None:
        data_dir = output_dir / "data"
        if rank == 0:
            prepare_data(data.source, data_dir, data.generate_seed, data.generate_scale)
            log.info("synthetic data (%s) in %s", data.source, data_dir)
        _barrier()
        data = dataclasses.replace(data, source=task, data_dir=str(data_dir))
    if family is not None:
        base = output_dir / "base"
        if rank == 0:
            corpus = [p + r for p, r, _ in load_examples(data, None, data_dir)]
            if data_dir is not None and (data_dir / "text" / "train.txt").is_file():
                corpus += (data_dir / "text" / "train.txt").read_text(encoding="utf-8").split("\n")
            prepare_model(pretrained, base, corpus, hidden_size=cfg.tiny.hidden_size,
                          num_layers=cfg.tiny.num_layers, num_heads=cfg.tiny.num_heads,
                          vocab_size=cfg.tiny.vocab_size, seed=cfg.tiny.seed)
        _barrier()
        pretrained = str(base)
    return data, data_dir, pretrained


def _hold_out_dev(cfg: TrainConfig, data: DataConfig, examples: list, data_dir: Path | None, output_dir: Path,
                  rank: int) -> list:
    """Drop the seeded dev slice from the training examples; rank 0 writes its docs in the task's local layout.

    `data` is the resolved data config (a toy source already names its task).
    """
    from lm_eval_diffusion.task_data import load_docs

    held = dev_slice(len(examples), cfg.data.dev_rows, cfg.data.dev_seed)
    if rank == 0:
        docs = load_docs(data.source, data.split, data_dir or None)
        out = output_dir / "dev_data" / data.source / "test.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(docs[i]) + "\n" for i in held), encoding="utf-8")
        log.info("dev slice: %d of %d %s/%s docs held out (seed %d), written to %s", len(held), len(examples),
                 data.source, data.split, cfg.data.dev_seed, out)
    kept = set(range(len(examples))) - set(held)
    return [e for i, e in enumerate(examples) if i in kept]


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Everything `run` needs, from a validated config: process group, data, model, engine, EMA."""
    from lm_eval_diffusion.backbone import load_backbone

    dist_info = init_distributed(cfg.run.engine)
    resolve_batch(cfg, dist_info.world_size)  # main.py did this from WORLD_SIZE; the process group is the truth
    output_dir = Path(cfg.run.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(output_dir, dist_info.rank)
    if dist_info.rank == 0:
        save_config(cfg, output_dir / "config.yaml")
        if cfg.run.engine == "deepspeed":
            (output_dir / "deepspeed_config.json").write_text(json.dumps(deepspeed_config(cfg), indent=2))
    set_seed(cfg.run.seed)

    data_cfg, data_dir, pretrained = _prepare_toy_inputs(cfg, output_dir, dist_info.rank)

    if cfg.run.engine == "deepspeed":
        from deepspeed.accelerator import get_accelerator

        device = torch.device(get_accelerator().device_name(dist_info.local_rank))
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # DeepSpeed bf16 trains bf16 weights (fp32 master in the optimizer); the torch engine keeps fp32
    # weights and autocasts.
    load_dtype = torch.bfloat16 if cfg.run.engine == "deepspeed" and cfg.run.precision == "bf16" else torch.float32
    family = None if cfg.model.family == "auto" else cfg.model.family
    bb = load_backbone(pretrained, family=family, dtype=load_dtype, device=device,
                       trust_remote_code=cfg.model.trust_remote_code, mask_id=cfg.model.mask_id,
                       revision=cfg.model.revision, probe_padding=False)
    examples = load_examples(data_cfg, bb.tokenizer, data_dir)
    if cfg.data.dev_rows:
        examples = _hold_out_dev(cfg, data_cfg, examples, data_dir, output_dir, dist_info.rank)
    data = tokenize_examples(examples, bb.tokenizer, bb.spec.eos_id, cfg.data.max_length, bb.spec.shift_logits)
    rows = data.rows[: cfg.data.max_rows] if cfg.data.max_rows else data.rows
    log.info("data %s/%s: %d rows (%d truncated to %d tokens, %d dropped: prompt too long)", data_cfg.source,
             cfg.data.split, len(rows), data.num_truncated, cfg.data.max_length, data.num_dropped)
    log.info("batch: %d rank(s) x micro-batch %d x accumulation %d = %d rows per optimizer step%s",
             dist_info.world_size, cfg.optim.micro_batch_size, cfg.optim.grad_accum,
             dist_info.world_size * cfg.optim.micro_batch_size * cfg.optim.grad_accum,
             " (optim.global_batch_size)" if cfg.optim.global_batch_size else "")
    log.info("model %s: family %s, mask id %d, EOS %d, %s", pretrained, bb.spec.family, bb.spec.mask_id,
             bb.spec.eos_id, f"JEPA lambda={cfg.jepa.lambda_:g}" if cfg.jepa.lambda_ > 0 else "baseline (lambda=0)")
    return Trainer(cfg, bb.model, bb.tokenizer, bb.spec, rows, dist_info, pretrained, device)


def run(cfg: TrainConfig) -> Path:
    """Train from a validated config; return the exported `final/` directory."""
    try:
        return build_trainer(cfg).train()
    finally:
        # A process group still alive at interpreter exit can abort a rank after its work is done
        # ("terminate called without an active exception", exit 250 under 2 gloo ranks).
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
