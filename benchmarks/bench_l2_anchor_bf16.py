"""How much of the L2 anchor's force bf16 zeroes under the DeepSpeed engine (issue 18, item 5).

The anchor (`anchor.l2_lambda`, `engines.L2Anchor`) adds lambda * (theta - theta_base) to each backbone
parameter's gradient on the last micro-batch of a step. Under DeepSpeed bf16, theta is the bf16 module
weight (the rounded fp32 master) and theta_base its bf16 copy at the start, so a weight whose master
moved less than half a bf16 step from theta_base reads as unmoved and gets no anchor force. Then the
term is added to the micro-batch's bf16 gradient, which rounds it again.

This runs the trainer itself (`build_trainer`, `Trainer.train_step`, DeepSpeed ZeRO-2, bf16, the tiny
LLaDA-like model and synthetic GSM8K data of `tiny_baseline.yaml`, its 2 x 2 = 4 rows per step rather
than the paper's 32; one process, plain python) with the Wide-t anchor config's
lambda 1e-4 and lr schedule (peak lr, 5% warmup, cosine over 466 steps: 2 epochs of GSM8K's 7,473 rows
at 32 rows per step), and records, inside the anchor's own hook, what it computes next to the fp32
reference. Only the recording is added (a subclass that calls the real hook); the run is unchanged.
Per step s (the anchor as applied in step s, on the weights after s - 1 updates), over every backbone
element, with d32 = master_fp32 - base (the fp32 master starts at the bf16 base, checked at step 1),
d16 = theta_bf16 - base_bf16 as the hook takes it, g the bf16 micro-batch gradient and
out = the hook's bf16 result g + lambda * d16:

    norm       ||d16|| / ||d32||                     size of the bf16 difference relative to fp32's
    along      <d16, d32> / ||d32||^2                its component along the fp32 force (1 = all present)
    zeroed     #{d16 = 0, d32 != 0} / #{d32 != 0}    moved weights the anchor sees as unmoved
    reach      <out - g, lambda d32> / ||lambda d32||^2   the force that reaches the optimizer, along fp32's
    lost       #{out = g, d32 != 0} / #{d32 != 0}    moved weights whose gradient the anchor leaves unchanged

plus `moved` (#{d32 != 0} / #elements) and `grad rms` (the RMS of g: `reach` depends on it, as the bf16
gradient's step is |g| * 2^-8 to 2^-7).

CPU (2 cores: 3 to 4 minutes for the default 2 x 100 steps; DeepSpeed's first run JIT-builds its
shared-memory comm op, about 2 more minutes):

    python benchmarks/bench_l2_anchor_bf16.py

Other rates or lengths: --lrs 1.4e-6 1e-5 --steps 100 --report-at 10 50 100; any trainer option after
`--`, e.g. `-- --model.pretrained DIR` for a real checkpoint (on GPU). `-- --run.precision fp32` is the
control: the same run with fp32 weights gives norm = along = 1, zeroed = 0 and reach ~1 from step 10.

Measured (2-core CPU, DeepSpeed 0.19.8, torch 2.13 CPU, 3 minutes). The tiny model's weights are 83%
within 2^-8..2^-4 in magnitude; its gradient RMS is ~1e-2 per element, far above an 8B model's
(~1e-5 at a global norm of 1 over 8e9 weights), so `reach` and `lost` here overstate the loss for an
8B model; `zeroed` depends on the weights' magnitudes and on how steadily Adam moves them:

    lr 1.4e-6   step 10: along 0.05, zeroed 0.97 | step 50: 0.61, 0.62 | step 100: 0.94, 0.36 | reach <= 0.005
    lr 1e-5     step 10: along 0.32, zeroed 0.85 | step 50: 1.00, 0.26 | step 100: 1.00, 0.21 | reach <= 0.02
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dllm_jepa_train import build, trainer as trainer_module  # noqa: E402
from dllm_jepa_train.config import load_config  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "dllm_jepa_train" / "configs" / "tiny_baseline.yaml"
# |theta_base| bins (powers of two) for the last report: the bf16 step is |theta| * 2^-8 to 2^-7,
# so the zeroed share depends on the weights' magnitudes, which a real checkpoint need not share with this one.
BIN_EDGES = (2.0**-10, 2.0**-8, 2.0**-6, 2.0**-4, 2.0**-2)
BIN_LABELS = tuple([f"<2^{math.log2(BIN_EDGES[0]):.0f}"]
                   + [f"2^{math.log2(lo):.0f}..2^{math.log2(hi):.0f}" for lo, hi in zip(BIN_EDGES, BIN_EDGES[1:])]
                   + [f">=2^{math.log2(BIN_EDGES[-1]):.0f}"])


def element_stats(param: torch.Tensor, base: torch.Tensor, grad: torch.Tensor, out: torch.Tensor,
                  master: torch.Tensor, strength: float) -> dict[str, torch.Tensor]:
    """Sums over one parameter's elements (float64 scalars) and per-bin counts; all tensors of one shape.

    param, base, grad, out: bf16 (module weight, anchor base, gradient into and out of the anchor hook);
    master: fp32 (the optimizer's copy of param).
    """
    d32 = master.double() - base.double()
    d16 = (param.detach() - base).double()  # the hook's difference: bf16 operands
    ideal = strength * d32
    reach = out.double() - grad.double()
    moved = d32 != 0
    zeroed = moved & (d16 == 0)
    bins = torch.bucketize(base.double().abs().flatten(), torch.tensor(BIN_EDGES, dtype=torch.float64))
    num_bins = len(BIN_EDGES) + 1
    return {
        "numel": torch.tensor(float(d32.numel()), dtype=torch.float64),
        "moved": moved.sum().double(), "zeroed": zeroed.sum().double(),
        "lost": (moved & (reach == 0)).sum().double(),
        "sq32": (d32 * d32).sum(), "sq16": (d16 * d16).sum(), "dot16": (d16 * d32).sum(),
        "sq_grad": (grad.double() ** 2).sum(),
        "dot_reach": (reach * ideal).sum() / (strength * strength),  # later divided by sq32: lambda cancels
        "bin_moved": torch.bincount(bins[moved.flatten()], minlength=num_bins).double(),
        "bin_zeroed": torch.bincount(bins[zeroed.flatten()], minlength=num_bins).double(),
        "bin_numel": torch.bincount(bins, minlength=num_bins).double(),
    }


class RecordingAnchor(trainer_module.L2Anchor):
    """The trainer's anchor, unchanged, that also records what each armed hook computed."""

    def __init__(self, params: list[torch.nn.Parameter], strength: float) -> None:
        self.records: list[dict[str, torch.Tensor]] = []
        super().__init__(params, strength)

    def _hook(self, param: torch.nn.Parameter, base: torch.Tensor):
        from deepspeed.utils import safe_get_full_fp32_param

        apply = super()._hook(param, base)

        def hook(grad: torch.Tensor) -> torch.Tensor | None:
            out = apply(grad)
            if out is not None:
                master = safe_get_full_fp32_param(param)
                if master is None:
                    raise RuntimeError("no fp32 master for a backbone parameter: run the DeepSpeed engine "
                                       "in bf16 with ZeRO 1 or 2 (run.engine deepspeed, run.precision bf16)")
                self.records.append(element_stats(param, base, grad, out, master, self.strength))
            return out

        return hook


def summarise(records: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Sum the per-parameter records of one step."""
    return {key: sum(r[key] for r in records) for key in records[0]}


def figures(total: dict[str, torch.Tensor]) -> dict[str, float]:
    """The figures of the module doc from one step's sums (NaN while nothing has moved)."""
    sq32 = float(total["sq32"])
    moved = float(total["moved"])
    nan = float("nan")
    return {
        "moved": moved / float(total["numel"]),
        "norm": math.sqrt(float(total["sq16"]) / sq32) if sq32 else nan,
        "along": float(total["dot16"]) / sq32 if sq32 else nan,
        "zeroed": float(total["zeroed"]) / moved if moved else nan,
        "reach": float(total["dot_reach"]) / sq32 if sq32 else nan,
        "lost": float(total["lost"]) / moved if moved else nan,
        "grad_rms": math.sqrt(float(total["sq_grad"]) / float(total["numel"])),
    }


def run_rate(lr: float, args, workdir: Path) -> tuple[str, list[tuple[int, dict[str, float], dict]]]:
    """Train `args.steps` steps at peak rate `lr`; (engine label, the figures and sums at each report step)."""
    overrides = [
        "--run.engine", "deepspeed", "--run.precision", "bf16", "--run.zero_stage", "2",
        "--anchor.l2_lambda", str(args.l2_lambda), "--optim.lr", str(lr),
        "--optim.max_steps", str(args.schedule_steps), "--optim.warmup_ratio", "0.05",
        "--model.gradient_checkpointing", "false",  # same arithmetic, less CPU time
        "--run.output_dir", str(workdir / f"lr_{lr:g}"), "--run.save_every", "0",
        *args.overrides,
    ]
    cfg = load_config([str(args.config)], overrides)
    real_anchor = trainer_module.L2Anchor
    trainer_module.L2Anchor = RecordingAnchor  # Trainer builds its anchor from this module name
    try:
        trainer = build.build_trainer(cfg)
    finally:
        trainer_module.L2Anchor = real_anchor
    anchor = trainer.anchor
    num_params = len(anchor.base)
    out = []
    for step in range(1, args.steps + 1):
        epoch, batches = trainer.step_batches(step - 1)
        anchor.records.clear()
        trainer.train_step(batches, step, epoch)
        if len(anchor.records) != num_params:
            raise RuntimeError(f"step {step}: the anchor fired on {len(anchor.records)} of {num_params} parameters")
        total = summarise(anchor.records)
        if step == 1 and float(total["sq32"]) != 0.0:
            raise RuntimeError("step 1: the fp32 master differs from the bf16 base before any update")
        if step in args.report_at:
            out.append((step, figures(total), total))
    return f"{cfg.run.engine} ZeRO-{cfg.run.zero_stage} {cfg.run.precision}", out


def main(argv: list[str] | None = None) -> dict[float, list]:
    """Run each rate, print one line per report step and the magnitude bins of the last; return the figures."""
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1.4e-6, 1e-5],
                        help="peak rates (1.4e-6: gsm8k_widet_l2anchor.yaml)")
    parser.add_argument("--l2-lambda", type=float, default=1e-4, help="gsm8k_widet_l2anchor.yaml's lambda_L2")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--report-at", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--schedule-steps", type=int, default=466,
                        help="the cosine schedule's length (2 epochs x 233 steps of 32 GSM8K rows)")
    args = parser.parse_args(argv)
    args.overrides = overrides
    if max(args.report_at) > args.steps:
        parser.error("--report-at beyond --steps")

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_l2_anchor_") as tmp:
        for lr in args.lrs:
            start = time.perf_counter()
            engine, results[lr] = run_rate(lr, args, Path(tmp))
            seconds = time.perf_counter() - start
            print(f"\n== peak lr {lr:g}, lambda_L2 {args.l2_lambda:g}, {engine} ({seconds:.0f} s) ==")
            columns = ("moved", "norm", "along", "zeroed", "reach", "lost")
            print(f"{'step':>5} " + " ".join(f"{k:>7}" for k in columns) + "  grad rms")
            for step, fig, _ in results[lr]:
                print(f"{step:>5} " + " ".join(f"{fig[k]:>7.3f}" for k in columns) + f"  {fig['grad_rms']:.1e}")
            step, _, total = results[lr][-1]
            print(f"step {step} by |theta_base|: bin, share of elements, zeroed share of its moved elements")
            for label, numel, moved, zeroed in zip(BIN_LABELS, total["bin_numel"], total["bin_moved"],
                                                   total["bin_zeroed"]):
                share = float(numel) / float(total["numel"])
                print(f"  {label:>12} {share:7.3f} {float(zeroed) / float(moved) if moved else float('nan'):7.3f}")
    return results


if __name__ == "__main__":
    main()
