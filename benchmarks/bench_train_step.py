"""Time one optimizer step of the diffusion baseline and of DLLM-JEPA side by side, with and without
gradient checkpointing, plus the EMA update and the target forward alone.

CPU (default; a small LLaDA-like model, about a minute):

    python benchmarks/bench_train_step.py

GPU, LLaDA-8B-shaped (the tiny LLaDA-like remote class at d_model 4096, 32 layers, 32 heads, SwiGLU
12,288, RMSNorm, vocab 126,464: ~8.0B parameters, bf16 weights; micro-batch 2 x 512, accumulation 2, EMA
update included; on an 80 GB card pass fewer layers, e.g. `--layers 24`):

    python benchmarks/bench_train_step.py --gpu

The step is the trainer's own `Trainer.train_step` (same collator, losses, EMA target with its bf16
shadow and no output head). Only the engine differs from a real run: one process, weights in the
compute dtype, and by default on GPU a stateless SGD instead of AdamW, because AdamW state for 8B
parameters does not fit one GPU next to the fp32 EMA. The optimizer step is the same work in both
arms, so leaving it out makes the JEPA / baseline ratio an upper bound. Target: ratio <= 1.20.

`--lora` trains LoRA adapters instead (`--lora.enabled true`: the trainer's default rank, alpha,
dropout and modules over the frozen base; the EMA follows the adapters): all 32 layers of the 8B shape
fit one 80 GB card by `dllm_jepa_train.memory`, so `--gpu --lora` needs no `--layers`.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dllm_jepa_train.config import load_config
from dllm_jepa_train.engines import TorchEngine, param_groups
from dllm_jepa_train.trainer import Trainer
from lm_eval_diffusion.backbone import FamilySpec
from lm_eval_diffusion.distributed import DistInfo


class BenchTrainer(Trainer):
    """The real trainer on an engine whose weights are already in the compute dtype."""

    optimizer_name = "adamw"

    def _build_engine(self, module, device):
        groups = param_groups(module, self.cfg.optim.weight_decay)
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(groups, lr=self.cfg.optim.lr)
        else:
            optimizer = torch.optim.AdamW(groups, lr=self.cfg.optim.lr, fused=device.type == "cuda")
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return TorchEngine(module, optimizer, scheduler, self.cfg.optim.grad_accum, self.cfg.optim.grad_clip)


def build_model(args, device: torch.device, dtype: torch.dtype):
    """The tiny LLaDA-like model at args' sizes (`args.mlp_hidden`: None, tiny blocks; an int, LLaDA's
    SwiGLU block), created on `device` in `dtype`; mask id vocab - 1, EOS and padding vocab - 2."""
    from dllm_jepa_train.toy.models import build_llada_shaped

    return build_llada_shaped(device, dtype, vocab_size=args.vocab, d_model=args.width, n_layers=args.layers,
                              n_heads=args.heads, mlp_hidden_size=args.mlp_hidden)


def synthetic_rows(args, num_rows: int) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    prompt_len = args.seq_len // 8
    rows = []
    for _ in range(num_rows):
        ids = torch.randint(0, args.vocab - 2, (args.seq_len,), generator=gen).tolist()
        rows.append({"prompt_ids": ids[:prompt_len], "response_ids": ids[prompt_len:-1] + [args.vocab - 2]})
    return rows


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(args, device, dtype, lam: float, checkpointing: bool) -> dict:
    cfg = load_config(None, [
        "--run.engine", "torch", "--run.precision", "bf16" if dtype == torch.bfloat16 else "fp32",
        "--run.output_dir", str(args.out), "--jepa.lambda", str(lam),
        "--model.gradient_checkpointing", str(checkpointing).lower(), "--optim.micro_batch_size", str(args.micro),
        "--optim.grad_accum", str(args.accum), "--optim.max_steps", "1000", "--optim.lr", "1e-6",
        "--data.max_length", str(args.seq_len), "--data.pad_to_max_length", "true", "--jepa.collapse_every", "0",
        *(["--lora.enabled", "true"] if getattr(args, "lora", False) else []), *getattr(args, "overrides", []),
    ])
    spec = FamilySpec(family="llada", mask_id=args.vocab - 1, stop_ids=(args.vocab - 2,), pad_id=args.vocab - 2,
                      shift_logits=False, vocab_size=args.vocab, eos_id=args.vocab - 2)
    BenchTrainer.optimizer_name = args.optimizer
    model = build_model(args, device, dtype)
    rows = synthetic_rows(args, args.micro * args.accum * (args.steps + args.warmup))
    trainer = BenchTrainer(cfg, model, None, spec, rows, DistInfo(), "bench", device)
    for step in range(args.warmup):
        trainer.train_step(trainer.step_batches(step)[1], step + 1, 0)
    batches = [trainer.step_batches(args.warmup + s)[1] for s in range(args.steps)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for s, micro in enumerate(batches):
        sync(device)
        start = time.perf_counter()
        trainer.train_step(micro, args.warmup + s + 1, 0)
        sync(device)
        times.append(time.perf_counter() - start)
    # The median resists other processes on a shared machine better than the mean.
    result = {"s_per_step": statistics.median(times)}
    if device.type == "cuda":
        result["peak_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    if trainer.target is not None:
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.target.update()
        sync(device)
        result["ema_update_s"] = (time.perf_counter() - start) / args.steps
        result["ema_params"] = trainer.target.num_parameters()
        if hasattr(trainer.target, "update_bound_bytes"):  # the one-pass EMA's least traffic per update
            result["ema_bound_bytes"] = trainer.target.update_bound_bytes()
        batch = trainer._to_device(batches[0][0])
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.target.encode(batch["target_ids"], batch["target_keep"])
        sync(device)
        result["target_forward_s"] = (time.perf_counter() - start) / args.steps
    del trainer, model, batches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="LLaDA-8B shape, bf16, on CUDA")
    parser.add_argument("--steps", type=int, default=None, help="timed optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps per variant")
    parser.add_argument("--layers", type=int, default=None, help="override the number of layers")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default=None,
                        help="default: adamw on CPU, sgd on GPU (see the module docstring)")
    parser.add_argument("--no-checkpointing-variants", action="store_true",
                        help="only time with gradient checkpointing on")
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters over a frozen base (lora.enabled)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench_train_step"))
    args = parser.parse_args()
    if args.gpu:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu asked for but CUDA is not available")
        device, dtype = torch.device("cuda"), torch.bfloat16
        shape = {"width": 4096, "layers": 32, "heads": 32, "vocab": 126464, "mlp_hidden": 12288, "seq_len": 512,
                 "micro": 2, "accum": 2}
        args.optimizer = args.optimizer or "sgd"
        args.steps = args.steps or 5
    else:
        device, dtype = torch.device("cpu"), torch.float32
        shape = {"width": 256, "layers": 4, "heads": 4, "vocab": 4096, "mlp_hidden": None, "seq_len": 256,
                 "micro": 2, "accum": 2}
        args.optimizer = args.optimizer or "adamw"
        args.steps = args.steps or 4
    for key, value in shape.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    print(f"device {device} | dtype {dtype} | width {args.width} layers {args.layers} heads {args.heads} "
          f"vocab {args.vocab} | micro-batch {args.micro} x {args.seq_len} tokens, accumulation {args.accum} | "
          f"optimizer {args.optimizer} | {args.steps} timed steps{' | LoRA' if args.lora else ''}")
    settings = [True] if args.no_checkpointing_variants else [True, False]
    for checkpointing in settings:
        base = time_variant(args, device, dtype, 0.0, checkpointing)
        jepa = time_variant(args, device, dtype, 1.0, checkpointing)
        ratio = jepa["s_per_step"] / base["s_per_step"]
        mem = (f" | peak GB baseline {base['peak_gb']:.1f}, JEPA {jepa['peak_gb']:.1f}" if "peak_gb" in base else "")
        print(f"checkpointing {'on ' if checkpointing else 'off'} | baseline {base['s_per_step']:.4f} s/step | "
              f"JEPA {jepa['s_per_step']:.4f} s/step | ratio {ratio:.3f} (target <= 1.20) | "
              f"EMA update {jepa['ema_update_s'] * 1e3:.2f} ms | target forward {jepa['target_forward_s'] * 1e3:.2f} ms"
              f"{mem}")


if __name__ == "__main__":
    main()
