"""One GPU benchmark command: generation, compile, the training step and the EMA on LLaDA-8B-shaped
random models, side by side in one process, in minutes.

    python benchmarks/bench_gpu.py          # one H100 / H200 (target: <= 8 minutes in all)
    python benchmarks/bench_gpu.py --cpu    # smoke test of every part at tiny shapes (seconds; no compile)

The models are the tiny LLaDA-like blocks in LLaDA-8B's shape (`LLADA_8B_SHAPE`: SwiGLU 12,288, RMSNorm,
rotary attention, 4096 x 32 layers, vocabulary 126,464: ~8.0B parameters), random weights created on the
GPU in bf16, so a forward costs what LLaDA-8B's does. Each setting is timed once (no repeats). Parts:

1. generation, eager (`bench_generate.compare_with_reference`): LLaDA's reference loop (re-implemented as
   published) vs ours (the full loop) vs the forward-only bound, prompt 768, gen 256, 128 steps, block
   128, batch 1 and 8; tokens must be identical. Target: bound / ours >= 0.95 at batch 1 and 8.
2. early exit vs the full loop (`bench_generate.early_exit_forced`), gen 256 and 512, batch 8, row r's EOS
   forced after a GSM8K-like answer length (30-134 tokens; random weights never end an answer).
3. compile: eager vs compiled forward (batch 8, canvas 1,024), and compiled generation as the full loop
   (`early_exit=false`) at batch 1 and 8 (two graphs, through `lm_eval_diffusion.compiled.CompiledLogits`)
   with its agreement rate against the eager tokens of part 1 (in bf16 another kernel order can flip a
   near-tie, as another --batch_size can).
4. training step (`bench_train_step.time_variant`, the trainer's own `train_step`): JEPA / baseline step
   time with gradient checkpointing on and off (SGD), then AdamW with checkpointing on, at the depth
   the card's memory allows (`train_layers`; printed with the peak memory). Target: ratio <= 1.20.
5. EMA update (`EmaTarget.update`, timed inside part 4) against its bound: 12 bytes per EMA parameter
   (read and write the fp32 master, read the bf16 online weight, write the bf16 shadow) at the copy
   bandwidth measured here. Target: time / bound <= 1.3.

A summary prints every criterion; the exit status is 1 only when the reference and ours disagree on a
token, never for a missed speed target. Where `lm_eval_diffusion.compiled` is missing, part 3 says so
and times `torch.compile(model)` instead. `--train-compile` adds to part 4 a row with the trainer's
compile switch (`model.compile`) on, SGD with checkpointing (it costs the compiles of both arms).
`--lora` trains LoRA adapters in part 4 (`--lora.enabled true`: the trainer's default rank and modules
over a frozen base); its depth comes from `dllm_jepa_train.memory` (all 32 layers fit either card).
Every part-4 row prints, beside the measured peak, `dllm_jepa_train.memory`'s estimate of the JEPA arm.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import platform
import sys
import tempfile
import time
from argparse import Namespace
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_generate as gen  # noqa: E402
import bench_train_step as train  # noqa: E402
from dllm_jepa_train.memory import (  # noqa: E402
    LLADA_LORA_MODULES, Shape, lora_activation_values, lora_parameters, memory_estimate, predictor_parameters,
)
from dllm_jepa_train.toy.models import LLADA_8B_SHAPE  # noqa: E402
from lm_eval_diffusion.sampler import LladaSamplerConfig, llada_generate  # noqa: E402

BUDGET_S = 480.0  # the whole command on one H100/H200 (issue 21)
BOUND_TARGET = 0.95  # forward-only bound / ours, batch 1 and 8
RATIO_TARGET = 1.20  # JEPA / baseline step time
EMA_TARGET = 1.3  # EMA update time / its 12-bytes-per-parameter bound
EMA_BYTES_PER_PARAM = 12  # read + write fp32 master (8), read bf16 online (2), write bf16 shadow (2)
MEMORY_HEADROOM = 0.92  # share of the card's memory the layer estimate may plan for
SLACK_GB = 10.0  # logits' workspace, kernels' workspaces, allocator slack (train_peak_gb's calibrated constant)
PREDICTOR_DEPTH = 2  # the trainer's default jepa.predictor_depth, which bench_train_step keeps


@dataclass(frozen=True)
class Plan:
    """Shapes of one run: generation (a bench_generate Setting, gen 256), early-exit generation lengths,
    and the training model's sizes (bench_train_step's argument names)."""

    setting: gen.Setting
    exit_gen_lengths: tuple[int, ...]  # early exit vs full, each at batch 8
    answer_lengths: tuple[int, ...]  # forced EOS position per row (r % 8)
    train: dict  # width, heads, vocab, mlp_hidden, seq_len, micro, accum, steps, warmup
    use_compile: bool


GPU_PLAN = Plan(
    setting=gen.GPU,
    exit_gen_lengths=(256, 512),
    answer_lengths=gen.ANSWER_LENGTHS,
    train={"width": LLADA_8B_SHAPE["d_model"], "heads": LLADA_8B_SHAPE["n_heads"],
           "vocab": LLADA_8B_SHAPE["vocab_size"], "mlp_hidden": LLADA_8B_SHAPE["mlp_hidden_size"], "seq_len": 512,
           "micro": 2, "accum": 2, "steps": 3, "warmup": 1},
    use_compile=True,
)
# Every part at toy sizes, the model LLaDA-shaped too (SwiGLU, RMSNorm): the suite's smoke test.
CPU_PLAN = Plan(
    setting=gen.Setting(d_model=64, n_layers=2, n_heads=4, vocab=512, prompt_length=16, gen_length=32, steps=16,
                        block_length=16, batch_sizes=(1, 8), dtype=torch.float32, device="cpu", warmup_runs=0,
                        repeats=1, mlp_hidden_size=192),
    exit_gen_lengths=(32, 64),
    answer_lengths=tuple(max(1, n * 32 // 256) for n in gen.ANSWER_LENGTHS),
    train={"width": 64, "heads": 4, "vocab": 512, "mlp_hidden": 192, "seq_len": 64, "micro": 1, "accum": 1,
           "steps": 1, "warmup": 0},
    use_compile=False,
)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@contextmanager
def part(name: str, walls: dict):
    """Print a part's header and, at its end, its wall time (kept in `walls`)."""
    print(f"\n== {name}")
    start = time.perf_counter()
    yield
    walls[name] = time.perf_counter() - start
    print(f"-- {name}: {walls[name]:.1f} s")


def train_params(n_layers: int, width: int, mlp_hidden: int, vocab: int) -> int:
    """Parameters of the LLaDA-shaped model: embedding and head, then per layer attention (4 d^2) and
    the SwiGLU MLP (3 d h); norms left out (< 0.01%)."""
    return 2 * vocab * width + n_layers * (4 * width * width + 3 * width * mlp_hidden)


def train_peak_gb(n_layers: int, optimizer: str, checkpointing: bool, width: int, mlp_hidden: int, vocab: int,
                  seq_tokens: int) -> float:
    """Estimated peak GB of a JEPA step (the larger arm): bf16 weights and gradients (4 B/param), AdamW's
    two bf16 moments (4), the EMA's fp32 master and bf16 shadow without the head (6), times 1.1, plus
    activations (bf16 per token and layer: ~10 d + 4 h values kept for backward without checkpointing,
    the layer input with it), plus 10 GB of logits, workspace and allocator slack. Calibrated on the
    one measurement there is: the 4x-GELU 7.5B model at 32 layers, checkpointing on, peaked at 89 GB."""
    params = train_params(n_layers, width, mlp_hidden, vocab)
    state = (4 + (4 if optimizer == "adamw" else 0)) * params + 6 * (params - vocab * width)
    per_token_layer = 2 * (width if checkpointing else 10 * width + 4 * mlp_hidden)
    return (1.1 * state + per_token_layer * seq_tokens * n_layers) / 1e9 + 10.0


def memory_module_gb(n_layers: int, optimizer: str, checkpointing: bool, sizes: dict, lora: bool) -> float:
    """`dllm_jepa_train.memory`'s estimate of bench_train_step's JEPA arm: torch engine with bf16 weights
    (AdamW's m, v in bf16; SGD keeps none), EMA with its bf16 shadow, predictor depth 2; with `lora`, rank
    16 adapters on LLaDA's default modules over a frozen bf16 base (the LLaDA-shaped model fuses q, k, v
    into `qkv`: it has 10% fewer adapter parameters than counted here)."""
    shape = Shape(sizes["width"], n_layers, sizes["heads"], sizes["mlp_hidden"], sizes["vocab"])
    num_backbone = shape.num_parameters()
    num_predictor = predictor_parameters(shape.width, PREDICTOR_DEPTH)
    if lora:
        num_adapters = lora_parameters(shape, 16, LLADA_LORA_MODULES)
        counts = {"num_trainable": num_adapters + num_predictor, "num_frozen": num_backbone, "num_ema": num_adapters,
                  "adapter_values": lora_activation_values(shape, 16)}
    else:
        counts = {"num_trainable": num_backbone + num_predictor, "num_ema": num_backbone - shape.vocab * shape.width}
    est = memory_estimate(**counts, engine="torch", weight_bytes=2, compute_bytes=2, shape=shape,
                          micro_batch=sizes["micro"], length=sizes["seq_len"], checkpointing=checkpointing,
                          use_jepa=True, target_has_head=lora)
    return est["total"] - (est["optimizer"] if optimizer == "sgd" else 0.0)


def train_layers(total_gb: float, optimizer: str, checkpointing: bool, sizes: dict, max_layers: int = 32,
                 lora: bool = False) -> int:
    """The most layers (<= max_layers, even) whose estimated peak fits MEMORY_HEADROOM of the card: full
    fine-tuning by `train_peak_gb` (calibrated), LoRA by `memory_module_gb` + SLACK_GB (not yet measured)."""
    def peak(n):
        if lora:
            return memory_module_gb(n, optimizer, checkpointing, sizes, lora=True) + SLACK_GB
        return train_peak_gb(n, optimizer, checkpointing, sizes["width"], sizes["mlp_hidden"], sizes["vocab"],
                             sizes["micro"] * sizes["seq_len"])

    fits = [n for n in range(2, max_layers + 1, 2) if peak(n) <= MEMORY_HEADROOM * total_gb]
    return max(fits, default=1)


def copy_bandwidth(device: str, num_bytes: int) -> float:
    """Bytes per second of a device-to-device copy (read + write counted), best of 3."""
    src = torch.empty(num_bytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = float("inf")
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - start)
    del src, dst
    return 2 * num_bytes / best


def forward_tflop(n_layers: int, width: int, mlp_hidden: int, vocab: int, batch: int, length: int) -> float:
    """TFLOP of one forward: 2 per weight and token (head included), plus attention's QK^T and AV."""
    matmul = n_layers * (4 * width * width + 3 * width * mlp_hidden) + width * vocab
    return (2 * matmul * batch * length + 4 * n_layers * batch * length * length * width) / 1e12


# ---- parts 1-3: generation ---------------------------------------------------------------------------
def run_generation(plan: Plan, model, offset: torch.Tensor, verdicts: dict) -> dict[int, tuple]:
    """Part 1; returns {batch: (prompts, our tokens, our seconds)} for part 3."""
    s = plan.setting
    logits_fn = gen.with_offset(model, offset)
    generator = torch.Generator().manual_seed(1)
    print(f"prompt {s.prompt_length}, gen {s.gen_length}, {s.steps} steps, block {s.block_length}; seconds per sample")
    print("| batch | LLaDA's reference loop | ours, full loop | forward-only bound | bound / ours | ref / ours | "
          "tokens identical |")
    print("|---|---|---|---|---|---|---|")
    eager = {}
    for batch in s.batch_sizes:
        prompts = gen.random_prompts(s, batch, generator)
        r = gen.compare_with_reference(logits_fn, s, prompts)
        eager[batch] = (prompts, r["tokens"], r["ours"])
        ratio = r["bound"] / r["ours"]
        verdicts[f"bound / ours >= {BOUND_TARGET} at batch {batch}"] = (ratio >= BOUND_TARGET, f"{ratio:.3f}", False)
        verdicts[f"reference and ours: identical tokens at batch {batch}"] = (r["identical"], str(r["identical"]), True)
        print(f"| {batch} | {r['reference'] / batch:.3f} | {r['ours'] / batch:.3f} | {r['bound'] / batch:.3f} | "
              f"{ratio:.3f} | {r['reference'] / r['ours']:.2f}x | {r['identical']} |")
    return eager


def run_early_exit(plan: Plan, model, offset: torch.Tensor, verdicts: dict) -> None:
    """Part 2: early exit vs the full loop at batch 8, EOS forced per row."""
    s = plan.setting
    logits_fn = gen.with_offset(model, offset)
    generator = torch.Generator().manual_seed(2)
    print(f"batch 8, {s.steps} steps, block {s.block_length}; EOS forced after {plan.answer_lengths} answer tokens "
          f"(row r: entry r % 8)")
    print("| gen | full loop s/sample | row-forwards | early exit s/sample | row-forwards | speed-up | "
          "answers identical |")
    print("|---|---|---|---|---|---|---|")
    for gen_length in plan.exit_gen_lengths:
        r = gen.early_exit_forced(logits_fn, s, gen_length, s.block_length, 8, generator, plan.answer_lengths)
        verdicts[f"early exit: answers identical to the full loop at gen {gen_length}"] = (
            r["identical"] == 8, f"{r['identical']}/8", False)
        print(f"| {gen_length} | {r['full'] / 8:.3f} | {r['full_row_forwards']} | {r['early_exit'] / 8:.3f} | "
              f"{r['exit_row_forwards']} | {r['full'] / r['early_exit']:.2f}x | {r['identical']}/8 |")


def compiled_forward(model, s: gen.Setting, use_compile: bool, max_length: int):
    """(logits_fn of the model through CompiledLogits, a function giving its graph count, a description)."""
    try:
        from lm_eval_diffusion.compiled import CompiledLogits
    except ImportError as error:  # the compile helper's module is not on this branch yet
        if not use_compile:
            return model, lambda: 0, f"eager (no compile in --cpu mode; CompiledLogits unavailable: {error})"
        compiled = torch.compile(model, dynamic=False)
        return compiled, lambda: "n/a", f"torch.compile(model) (CompiledLogits unavailable: {error})"
    compiled = CompiledLogits(model, honours_padding=True, pad_id=gen.MASK_ID + 1, batch_buckets=s.batch_sizes,
                              max_length=max_length, use_compile=use_compile)
    mode = "compiled" if use_compile else "its buckets run eagerly (no compile in --cpu mode)"
    return compiled, lambda: compiled.graphs, f"CompiledLogits, {mode}"


@torch.inference_mode()
def inference_canvas(prompts: torch.Tensor, s: gen.Setting) -> torch.Tensor:
    """The prompts and gen_length masks, (B, P + G) long, as an inference tensor like the sampler's canvas:
    a compiled graph guards on that (a normal tensor would compile a second graph)."""
    return torch.cat([prompts, torch.full((prompts.shape[0], s.gen_length), gen.MASK_ID, device=s.device)], dim=1)


def run_compile(plan: Plan, model, offset: torch.Tensor, eager: dict[int, tuple], verdicts: dict) -> None:
    """Part 3: eager vs compiled forward; compiled generation (full loop) at batch 1 and 8 vs eager tokens."""
    s = plan.setting
    canvas_length = s.prompt_length + s.gen_length
    compiled, graphs, how = compiled_forward(model, s, plan.use_compile, canvas_length)
    print(f"forward: {how}")
    compiled_fn = gen.with_offset(compiled, offset)
    config = LladaSamplerConfig(steps=s.steps, gen_length=s.gen_length, block_length=s.block_length)
    print("| batch | compile s | compiled full loop s/sample | eager full loop s/sample (part 1) | "
          "tokens agreeing | rows identical |")
    print("|---|---|---|---|---|---|")
    for batch in s.batch_sizes:
        prompts, eager_tokens, eager_seconds = eager[batch]
        canvas = inference_canvas(prompts, s)
        sync(s.device)
        start = time.perf_counter()
        compiled_fn(canvas)  # the compile, for this batch shape
        sync(s.device)
        compile_s = time.perf_counter() - start
        seconds, tokens = gen.timed(lambda: llada_generate(compiled_fn, prompts, config, mask_id=gen.MASK_ID), s)
        generated = tokens[:, s.prompt_length:] == eager_tokens[:, s.prompt_length:]
        agree = generated.float().mean().item()
        rows = int(generated.all(dim=1).sum())
        verdicts[f"compiled vs eager tokens at batch {batch} (reported, not a target)"] = (
            None, f"{agree:.4f} of tokens, {rows}/{batch} rows", False)
        print(f"| {batch} | {compile_s:.1f} | {seconds / batch:.3f} | {eager_seconds / batch:.3f} | {agree:.4f} | "
              f"{rows}/{batch} |")
    batch = max(s.batch_sizes)
    canvas = inference_canvas(eager[batch][0], s)
    times = {}
    with torch.inference_mode():
        for name, fn in (("eager", model), ("compiled", compiled)):
            fn(canvas)
            sync(s.device)
            start = time.perf_counter()
            for _ in range(3):
                fn(canvas)
            sync(s.device)
            times[name] = (time.perf_counter() - start) / 3
    tflop = forward_tflop(s.n_layers, s.d_model, s.mlp_hidden_size, s.vocab, batch, canvas_length)
    print(f"forward, batch {batch} x {canvas_length} tokens (mean of 3): eager {times['eager'] * 1e3:.1f} ms "
          f"({tflop / times['eager']:.0f} TFLOP/s) | compiled {times['compiled'] * 1e3:.1f} ms "
          f"({tflop / times['compiled']:.0f} TFLOP/s) | {times['eager'] / times['compiled']:.2f}x | "
          f"graphs compiled: {graphs()}")


# ---- parts 4-5: training step and EMA ----------------------------------------------------------------
def run_train(plan: Plan, device: str, dtype: torch.dtype, out: Path, train_compile: bool, verdicts: dict,
              lora: bool = False) -> None:
    """Part 4 (and the EMA figures of part 5): SGD with checkpointing on and off, then AdamW; with
    `train_compile`, SGD with checkpointing again under the trainer's `model.compile`; with `lora`, every
    row trains LoRA adapters (`--lora.enabled true`)."""
    sizes = plan.train
    if device == "cuda":
        total_gb = torch.cuda.get_device_properties(0).total_memory / 1e9
        bandwidth = copy_bandwidth(device, 2 << 30)
        # SGD's depth must fit checkpointing off too (one depth for both rows); AdamW runs with it on.
        layers = {"sgd": train_layers(total_gb, "sgd", False, sizes, lora=lora),
                  "adamw": train_layers(total_gb, "adamw", True, sizes, lora=lora)}
    else:
        bandwidth = copy_bandwidth(device, 64 << 20)
        layers = {"sgd": 1, "adamw": 1}
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s (read + write); micro-batch {sizes['micro']} x "
          f"{sizes['seq_len']} tokens, accumulation {sizes['accum']}, {sizes['steps']} timed steps per arm (median)"
          f"{'; LoRA adapters (the trainer defaults) over a frozen base' if lora else ''}")
    print("| optimizer | layers | params | checkpointing | compile | baseline s/step | JEPA s/step | JEPA / baseline | "
          "peak GB (baseline / JEPA) | estimate GB (JEPA) | EMA update ms | EMA bound ms | EMA / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [("sgd", True, False), ("sgd", False, False), ("adamw", True, False)]
    if train_compile:
        rows.append(("sgd", True, True))
    for optimizer, checkpointing, compiled in rows:
        # The trainer's compile switch (issue 21, ask 2); load_config names it if this branch lacks it.
        overrides = ["--model.compile", "true"] if compiled else []
        name = (f"{optimizer}, checkpointing {'on' if checkpointing else 'off'}{', compiled' if compiled else ''}"
                f"{', LoRA' if lora else ''}")
        arms = time_arms(sizes, layers[optimizer], optimizer, checkpointing, device, dtype, out, overrides, lora)
        if arms is None:
            verdicts[f"train step fits ({name})"] = (False, f"out of memory down to {layers[optimizer] * 3 // 4} "
                                                            "layers", False)
            continue
        n_layers, base, jepa = arms
        ratio = jepa["s_per_step"] / base["s_per_step"]
        # The one-pass EMA's own figure where it has one (same formula: 8 + online + shadow bytes).
        bound_bytes = jepa.get("ema_bound_bytes", EMA_BYTES_PER_PARAM * jepa["ema_params"])
        ema_bound = bound_bytes / bandwidth
        ema_ratio = jepa["ema_update_s"] / ema_bound
        peak = f"{base['peak_gb']:.1f} / {jepa['peak_gb']:.1f}" if "peak_gb" in base else "-"
        params = train_params(n_layers, sizes["width"], sizes["mlp_hidden"], sizes["vocab"])
        estimate = memory_module_gb(n_layers, optimizer, checkpointing, sizes, lora)
        name += f", {n_layers} layers"
        verdicts[f"JEPA / baseline <= {RATIO_TARGET} ({name})"] = (ratio <= RATIO_TARGET, f"{ratio:.3f}", False)
        verdicts[f"EMA update / bound <= {EMA_TARGET} ({name})"] = (ema_ratio <= EMA_TARGET, f"{ema_ratio:.2f}", False)
        print(f"| {optimizer} | {n_layers} | {params / 1e9:.2f}B | {'on' if checkpointing else 'off'} | "
              f"{'on' if compiled else 'off'} | {base['s_per_step']:.3f} | {jepa['s_per_step']:.3f} | {ratio:.3f} | "
              f"{peak} | {estimate:.1f} | {jepa['ema_update_s'] * 1e3:.2f} | {ema_bound * 1e3:.2f} | {ema_ratio:.2f} |")


def time_arms(sizes: dict, n_layers: int, optimizer: str, checkpointing: bool, device: str, dtype: torch.dtype,
              out: Path, overrides: list[str], lora: bool = False) -> tuple[int, dict, dict] | None:
    """(layers, baseline, JEPA) of `bench_train_step.time_variant` at `n_layers`, or, if that runs out of
    memory (the layer estimate is an estimate), at 3/4 of them; None if both do."""
    for layers in (n_layers, n_layers * 3 // 4):
        args = Namespace(**sizes, layers=layers, optimizer=optimizer, out=out, overrides=overrides, lora=lora)
        oom = None
        try:
            base = train.time_variant(args, torch.device(device), dtype, 0.0, checkpointing)
            jepa = train.time_variant(args, torch.device(device), dtype, 1.0, checkpointing)
            return layers, base, jepa
        except torch.OutOfMemoryError as error:
            oom = str(error).splitlines()[0]
        # Outside the except block: its traceback no longer holds the trainer, so the memory can go.
        free_memory(device)
        print(f"  {optimizer}, checkpointing {'on' if checkpointing else 'off'}: out of memory at {layers} layers "
              f"({oom})")
    return None


def free_memory(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch._dynamo.reset()  # compiled graphs hold the generation model's weights
        gc.collect()
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="smoke test: every part at tiny shapes, no compile")
    parser.add_argument("--train-compile", action="store_true",
                        help="part 4: add SGD with checkpointing under the trainer's compile switch (model.compile)")
    parser.add_argument("--lora", action="store_true",
                        help="part 4: train LoRA adapters (--lora.enabled true) over a frozen base, at the depth "
                             "dllm_jepa_train.memory fits")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on one H100/H200, or pass --cpu for the smoke test")
    plan = CPU_PLAN if args.cpu else GPU_PLAN
    threads = torch.get_num_threads()
    if args.cpu:
        torch.set_num_threads(1)  # two threads on a busy shared machine made CPU runs 10x slower
    try:
        return run(plan, args.train_compile, args.lora)
    finally:
        torch.set_num_threads(threads)


def run(plan: Plan, train_compile: bool, lora: bool = False) -> int:
    """Every part on `plan`, then the summary; 1 when a correctness check failed."""
    s = plan.setting
    is_cpu = s.device == "cpu"
    start = time.perf_counter()
    card = torch.cuda.get_device_name(0) if s.device == "cuda" else platform.processor() or "CPU"
    memory = f", {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB" if s.device == "cuda" else ""
    print(f"{card}{memory} | torch {torch.__version__} | {s.dtype} | "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    walls, verdicts = {}, {}
    with part("models", walls):
        exit_setting = replace(s, gen_length=max(plan.exit_gen_lengths))  # the offset covers every canvas
        model, offset = gen.build_random_model(exit_setting)
        sync(s.device)
        params = sum(p.numel() for p in model.parameters())
        print(f"generation model: d_model {s.d_model}, {s.n_layers} layers, {s.n_heads} heads, SwiGLU "
              f"{s.mlp_hidden_size}, RMSNorm, vocabulary {s.vocab}: {params / 1e9:.3f}B parameters, {s.dtype}")
    with part("1. generation: LLaDA's reference loop vs ours vs the forward-only bound", walls):
        eager = run_generation(plan, model, offset, verdicts)
    with part("2. early exit vs the full loop", walls):
        run_early_exit(plan, model, offset, verdicts)
    with part("3. compile: forward and generation", walls):
        run_compile(plan, model, offset, eager, verdicts)
    del model, offset, eager
    free_memory(s.device)
    with part("4-5. training step and EMA", walls):
        with tempfile.TemporaryDirectory() as out:
            run_train(plan, s.device, s.dtype, Path(out), train_compile, verdicts, lora)
    total = time.perf_counter() - start
    verdicts[f"total <= {BUDGET_S:.0f} s"] = (total <= BUDGET_S, f"{total:.0f} s", False)
    print("\n== summary" + (" (CPU smoke test: speed targets are for the GPU and mean nothing here)" if is_cpu else ""))
    for name, seconds in walls.items():
        print(f"wall {seconds:7.1f} s  {name}")
    print(f"wall {total:7.1f} s  total")
    failed = False
    for name, (ok, value, is_correctness) in verdicts.items():
        mark = "report" if ok is None else "PASS" if ok else "FAIL"
        print(f"{mark:6s} {name}: {value}")
        failed |= is_correctness and ok is False
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
