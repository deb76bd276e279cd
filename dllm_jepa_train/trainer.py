"""The training loop: step-wide loss normalisation, the three-part step, EMA update, logging, checkpoints.

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
With `model.compile` the online and target forwards (and the online backward) run through torch.compile
(`engines.compile_forward`, a speed setting: no silent eager fallback).

The engines (DeepSpeed, torch), their loss scaling, the LR schedule and the L2-to-base anchor are in
`engines.py`; process-group helpers in `lm_eval_diffusion/distributed.py` (shared with the harness);
building a `Trainer` from a config (data, model, plug-in inputs, logging) in `build.py` (`build_trainer`, `run`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from dllm_jepa_train import checkpoint as ckpt
from dllm_jepa_train.config import TrainConfig, t_setting
from dllm_jepa_train.data import DiffusionCollator, StepPlan
from dllm_jepa_train.engines import (
    L2Anchor, build_engine, compile_forward, enable_gradient_checkpointing, explain_compile_errors,
    peak_memory_gb,
)
from dllm_jepa_train.jepa import EmaTarget, OnlineModel, backbone_heads, backbone_width, build_predictor
from dllm_jepa_train.lora import AdapterEmaTarget, apply_lora, export_adapter, lora_meta
from dllm_jepa_train.memory import estimate_for_run
from dllm_jepa_train.objectives import collapse_stats, diffusion_denominator, diffusion_loss, jepa_loss
from lm_eval_diffusion.distributed import DistInfo, all_gather_rows, all_reduce_sum, barrier

log = logging.getLogger("dllm_jepa_train")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the batch."""


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

        is_checkpointed = cfg.model.gradient_checkpointing
        self.checkpointing = enable_gradient_checkpointing(backbone, spec.family) if is_checkpointed else "off"
        if cfg.lora.enabled:
            backbone = apply_lora(backbone, cfg.lora, spec.family, source, cfg.run.seed)
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
        fused = {"auto": None, "true": True, "false": False}[cfg.jepa.ema_fused]
        self.target = None
        if self.use_jepa and cfg.lora.enabled:  # the same frozen base with an EMA of the adapters swapped in
            self.target = AdapterEmaTarget(online.backbone, spec, cfg.jepa.ema_decay,
                                           getattr(self.engine, "autocast_dtype", None), fused)
        elif self.use_jepa:
            self.target = EmaTarget(online.backbone, spec, cfg.jepa.ema_decay, self.compute_dtype, cfg.jepa.ema_shadow,
                                    fused)
        # Every trainable backbone parameter: all of them, or the adapters under LoRA.
        self.anchor = (L2Anchor([p for p in online.backbone.parameters() if p.requires_grad], cfg.anchor.l2_lambda)
                       if cfg.anchor.l2_lambda > 0 else None)
        # After the EMA's deepcopy, which would otherwise share the online model's compiled forward.
        self.compiled = "off"
        self.compile_cause = f"{type(online.backbone).__name__} (gradient checkpointing: {self.checkpointing})"
        if cfg.model.compile:
            compile_forward(online.backbone, "the online forward", self.compile_cause)
            self.compiled = "online forward"
            if self.target is not None and self.target.model is online.backbone:
                self.compiled += " (the EMA target's too: the same model, eval mode)"
            elif self.target is not None:
                compile_forward(self.target.model, "the EMA target forward",
                                f"{type(self.target.model).__name__} (eval mode, no gradient checkpointing)")
                self.compiled += " + EMA target forward"
        self.global_step = 0
        self.collapse_buffer = {name: torch.empty(0) for name in ("z_context", "z_target")}
        self.tensorboard = self._tensorboard()
        self._log_memory(online)

    # ----------------------------------------------------------------------------------- setup
    def _build_engine(self, module: OnlineModel, device: torch.device):
        """The engine around `module` (a method so benchmarks can swap the optimizer)."""
        return build_engine(self.cfg, module, self.total_steps, self.compute_dtype)

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
        """Log the parameter counts and the per-rank memory estimate (`memory.py`), activations included."""
        cfg = self.cfg
        est = self.memory = estimate_for_run(cfg, online, self.target, self.anchor is not None, self.spec,
                                             self.checkpointing != "off", self.dist.world_size, self.compute_dtype)
        num_backbone = sum(p.numel() for p in online.backbone.parameters())
        num_trainable = sum(p.numel() for p in online.backbone.parameters() if p.requires_grad)
        log.info("parameters: backbone %d (trainable %d%s), predictor %d, EMA %d | gradient checkpointing: %s | "
                 "compiled: %s", num_backbone, num_trainable, ", LoRA" if cfg.lora.enabled else "",
                 sum(p.numel() for p in online.parameters()) - num_backbone,
                 self.target.num_parameters() if self.target else 0, self.checkpointing, self.compiled)
        engine = (f"deepspeed {cfg.run.precision} ZeRO-{cfg.run.zero_stage}" if cfg.run.engine == "deepspeed"
                  else f"torch engine, {'bf16 autocast' if self.compute_dtype != torch.float32 else 'fp32'}")
        log.info("memory estimate per rank (GB; %s, %d ranks; activations included: micro-batch %d x %d tokens, "
                 "checkpointing %s, %.0f%% of positions masked): %s", engine, self.dist.world_size,
                 cfg.optim.micro_batch_size, cfg.data.max_length, "on" if self.checkpointing != "off" else "off",
                 100 * cfg.diffusion.t_context[1], ", ".join(f"{k} {v:.3f}" for k, v in est.items()))

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
        diff_denominator, num_rows, num_tokens = all_reduce_sum(counts).tolist()
        lr = self.engine.lr()  # the rate this step's update uses (the scheduler steps with the optimizer)
        totals = torch.zeros(3, dtype=torch.float64, device=self.engine.device)
        z_contexts, z_targets = [], []
        for i, batch in enumerate(batches):
            batch = self._to_device(batch)
            attention_mask = batch.get("attention_mask")
            # 1. target: EMA encoder on the target view, no grad
            z_target = None
            if self.use_jepa:
                z_target = self.target.encode(batch["target_ids"], batch["target_keep"], attention_mask)
            # 2. context: online backbone (+ predictor) on the context view
            logits, z_context, prediction = self.engine(batch["context_ids"], batch["context_keep"], attention_mask)
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
            parts = all_reduce_sum(torch.stack([loss_diff.detach(), loss_jepa.detach(), loss.detach()]).double())
            # Checked before the backward so NaN never reaches the weights; a host sync per micro-batch.
            if not bool(torch.isfinite(parts).all()):
                raise NonFiniteLossError(
                    f"non-finite loss at optimizer step {step} (epoch {epoch}, micro-batch {i}, "
                    f"rows {batch['index'].tolist()} on rank {self.dist.rank}): loss_diff={parts[0].item()}, "
                    f"loss_jepa={parts[1].item()}; last good checkpoint: {self._latest_checkpoint()}")
            totals += parts
            if self.anchor is not None:
                self.anchor.armed = i == len(batches) - 1
            if cfg.model.compile:  # inductor compiles the backward graph at the first backward
                with explain_compile_errors("the online backward", self.compile_cause):
                    self.engine.backward(loss)
            else:
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
            gathered = all_gather_rows(z.detach().float())
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
                "step": self.global_step,
                **({"lora": lora_meta(cfg.lora, self.engine.module.backbone, self.source)} if cfg.lora.enabled else {})}

    def export(self, out_dir: Path) -> Path:
        """Rank 0 writes the HF checkpoint + jepa/ (weights are whole on every rank under ZeRO <= 2)."""
        if self.dist.rank == 0:
            online = self.engine.module
            ema = self.target.state_dict() if self.target else None
            if self.cfg.lora.enabled:  # peft's adapter files + tokenizer; jepa/ema_adapter.safetensors
                export_adapter(out_dir, online.backbone, self.tokenizer, online.predictor, ema, self.jepa_meta())
            else:
                ckpt.export_checkpoint(out_dir, online.backbone, self.tokenizer, self.source, self.cfg.model.revision,
                                       online.predictor, ema, self.jepa_meta())
            log.info("exported %s", out_dir)
        barrier()
        return out_dir

    def export_merged(self, out_dir: Path) -> Path:
        """LoRA, at the end of training: merge the adapters into the base in place (the online model is done)
        and write a plain HF checkpoint with jepa/ (predictor and settings; no EMA: it is of the adapters)."""
        if self.dist.rank == 0:
            online = self.engine.module
            meta = self.jepa_meta()
            meta["lora"]["merged"] = True
            merged = online.backbone.merge_and_unload()
            ckpt.export_checkpoint(out_dir, merged, self.tokenizer, self.source, self.cfg.model.revision,
                                   online.predictor, None, meta)
            log.info("exported %s (base + adapters merged)", out_dir)
        barrier()
        return out_dir

    def save_checkpoint(self) -> None:
        step = self.global_step
        stage = ckpt.staging_dir(self.output_dir, step)
        epoch, in_epoch = divmod(step, self.plan.steps_per_epoch)
        state = {"global_step": step, "epoch": epoch, "step_in_epoch": in_epoch, "seed": self.cfg.run.seed,
                 "total_steps": self.total_steps, "world_size": self.dist.world_size}
        if self.cfg.lora.enabled:  # the checkpoint holds the adapters only: name what they adapt
            state["lora_base"] = lora_meta(self.cfg.lora, self.engine.module.backbone, self.source)["base"]
        self.engine.save(stage / "engine")
        ckpt.write_local_state(stage, self.dist.rank, state, self.target.state_dict() if self.target else None)
        barrier()
        if self.dist.rank == 0:
            path = ckpt.publish_checkpoint(self.output_dir, step, self.cfg.run.save_total_limit)
            log.info("checkpoint %s", path)
        barrier()

    def resume(self, path: Path) -> None:
        state, ema_state = ckpt.read_local_state(path, self.dist.rank)
        base = lora_meta(self.cfg.lora, self.engine.module.backbone, self.source)["base"] if self.cfg.lora.enabled \
            else None
        if state.get("lora_base") != base:
            raise ValueError(f"{path} holds {'adapters of base ' + state['lora_base'] if state.get('lora_base') else 'a full fine-tune'}"
                             f"; this run trains {'adapters on ' + base if base else 'every weight'} (lora.enabled "
                             "and model.pretrained must match the run that wrote it)")
        self.engine.load(path / "engine")
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
        cfg = self.cfg
        resume_dir = ckpt.find_resume_dir(self.output_dir, cfg.run.resume)
        if resume_dir is not None:
            self.resume(resume_dir)
        elif cfg.run.resume:
            log.info("run.resume=%s: no checkpoint in %s, starting fresh", cfg.run.resume, self.output_dir)
        # Console log lines go through tqdm.write while the bar is shown, so they do not break it.
        with logging_redirect_tqdm(loggers=[log], tqdm_class=tqdm):
            self._run_steps()
        if self.tensorboard is not None:
            self.tensorboard.close()
        final = self.export(self.output_dir / "final")
        if cfg.lora.enabled and cfg.lora.export_merged:
            self.export_merged(self.output_dir / "final_merged")
        return final

    def _run_steps(self) -> None:
        """Optimizer steps from `global_step` to `total_steps`: metrics.jsonl, log lines, checkpoints, exports."""
        cfg = self.cfg
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
            record = {"step": self.global_step, "epoch": epoch, **metrics, "grad_norm": self.engine.grad_norm,
                      "tokens_per_s": tokens / seconds, "seconds_per_step": seconds,
                      "peak_memory_gb": peak_memory_gb(device)}
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
