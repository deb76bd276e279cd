"""The benchmark scripts keep running against the code they measure (they import the trainer's internals)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.subprocess
def test_bench_train_step_cpu_setting_runs_one_step(tmp_path):
    out = tmp_path / "runs"  # the benchmark's run folders
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/bench_train_step.py", "--steps", "1", "--warmup", "0",
                           "--layers", "1", "--no-checkpointing-variants", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "baseline" in proc.stdout and "ratio" in proc.stdout and "EMA update" in proc.stdout, proc.stdout[-2000:]


def load_bench_gpu(monkeypatch):
    """benchmarks/bench_gpu.py as a module (it puts benchmarks/ on sys.path, restored after the test)."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_gpu", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_gpu_cpu_mode_runs_every_part(monkeypatch, capsys):
    bench = load_bench_gpu(monkeypatch)
    assert bench.main(["--cpu"]) == 0
    out = capsys.readouterr().out
    assert "SwiGLU 192, RMSNorm" in out  # the LLaDA-shaped block, at toy size
    for header in ("== 1. generation", "== 2. early exit", "== 3. compile", "== 4-5. training step and EMA",
                   "== summary"):
        assert header in out, out[-3000:]
    lines = out.splitlines()
    generation = [line.split(" | ") for line in lines if line.startswith(("| 1 | ", "| 8 | ")) and "True" in line]
    assert len(generation) == 2, out  # part 1: reference and ours agree at batch 1 and 8
    early = {int(row[0][2:]): row for row in (line.split(" | ") for line in lines)
             if row[0] in ("| 32", "| 64") and len(row) == 7}
    assert set(early) == {32, 64}, out
    for row in early.values():  # early exit answers equal the full loop's, with fewer row-forwards
        assert row[6] == "8/8 |" and int(row[4]) < int(row[2]) == 128, row
    assert sum(line.startswith(("| sgd | 1 |", "| adamw | 1 |")) for line in lines) == 3, out
    assert "PASS   reference and ours: identical tokens at batch 8: True" in out
    assert "wall" in out and "total" in out


def test_llada_shaped_model_has_llada_8b_size_and_blocks():
    import torch

    from dllm_jepa_train.toy.models import LLADA_8B_SHAPE, build_llada_shaped

    model = build_llada_shaped("meta", torch.bfloat16)  # no memory: shapes only
    num_params = sum(p.numel() for p in model.parameters())
    d, L = LLADA_8B_SHAPE["d_model"], LLADA_8B_SHAPE["n_layers"]
    norms = (2 * L + 1) * d
    assert num_params == 2 * 126464 * d + L * (4 * d * d + 3 * d * 12288) + norms  # 8,015,581,184
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    block = model.model.encoder.blocks[0]
    assert isinstance(block.norm1, torch.nn.RMSNorm) and block.mlp.ff_proj.out_features == 12288
    assert block.qkv.bias is None and block.proj.bias is None


def test_llada_block_option_is_off_by_default(tmp_path):
    import json

    from dllm_jepa_train.toy.models import build_tiny_checkpoint
    from dllm_jepa_train.toy.remote.configuration_llada_tiny import LLaDAConfig
    from dllm_jepa_train.toy.remote.modeling_llada_tiny import LLaDAModelLM

    out = build_tiny_checkpoint(tmp_path / "llada", "llada")
    assert "mlp_hidden_size" not in json.loads((out / "config.json").read_text())  # config.json unchanged
    block = LLaDAModelLM(LLaDAConfig()).model.encoder.blocks[0]
    assert type(block.norm1).__name__ == "LayerNorm" and type(block.mlp[1]).__name__ == "GELU"
    assert block.qkv.bias is not None


def test_bench_gpu_layer_counts_fit_each_card(monkeypatch):
    bench = load_bench_gpu(monkeypatch)
    sizes = bench.GPU_PLAN.train
    # The estimate's one calibration point: the 4x-GELU 7.5B model (3 d h = 8 d^2), 32 layers,
    # checkpointing on, JEPA arm, SGD: 89 GB measured on an H200 (issue 21).
    assert abs(bench.train_peak_gb(32, "sgd", True, 4096, 8 * 4096 // 3, 126464, 1024) - 89) < 89 * 0.05
    h200, h100 = 143.8, 85.0  # total_memory / 1e9 of each card
    assert bench.train_layers(h200, "sgd", False, sizes) == 32
    assert 16 <= bench.train_layers(h100, "sgd", False, sizes) <= 24
    for card in (h200, h100):
        sgd, adamw = bench.train_layers(card, "sgd", False, sizes), bench.train_layers(card, "adamw", True, sizes)
        assert adamw <= sgd
        peak = bench.train_peak_gb(adamw, "adamw", True, sizes["width"], sizes["mlp_hidden"], sizes["vocab"], 1024)
        assert peak <= bench.MEMORY_HEADROOM * card


def test_bench_gpu_lora_depth_comes_from_the_memory_module(monkeypatch):
    bench = load_bench_gpu(monkeypatch)
    sizes = bench.GPU_PLAN.train
    for card in (143.8, 85.0):  # a LoRA run fits all 32 layers, checkpointing on or off, SGD or AdamW
        for optimizer, checkpointing in (("sgd", False), ("adamw", True)):
            assert bench.train_layers(card, optimizer, checkpointing, sizes, lora=True) == 32
    full = bench.memory_module_gb(32, "adamw", True, sizes, lora=False)
    lora = bench.memory_module_gb(32, "adamw", True, sizes, lora=True)
    assert lora < 0.25 * full  # the frozen bf16 base (16 GB) dominates; no optimizer state or EMA of it
    sgd = bench.memory_module_gb(32, "sgd", True, sizes, lora=True)
    assert 0 < lora - sgd < 4  # AdamW's bf16 m, v of the adapters and the depth-2 predictor (~0.45B)


def test_bench_gpu_cpu_lora_option_reaches_the_train_step_part(monkeypatch):
    bench = load_bench_gpu(monkeypatch)
    seen = {}
    monkeypatch.setattr(bench, "run", lambda plan, train_compile, lora=False: seen.update(plan=plan, lora=lora) or 0)
    assert bench.main(["--cpu", "--lora"]) == 0
    assert seen == {"plan": bench.CPU_PLAN, "lora": True}


@pytest.mark.skipif(not (ROOT / "dllm_jepa_train" / "lora.py").exists(),
                    reason="the trainer's LoRA (dllm_jepa_train/lora.py) is not on this branch yet")
def test_bench_gpu_cpu_lora_train_step_runs(monkeypatch, tmp_path):
    """`--cpu --lora`'s train-step arms (AdamW, checkpointing on), at the CPU plan's one layer: the EMA
    follows the adapters only. Parts 1-3 do not change with --lora (the full --cpu run is tested above)."""
    import torch

    bench = load_bench_gpu(monkeypatch)
    sizes = bench.CPU_PLAN.train
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        arms = bench.time_arms(sizes, 1, "adamw", True, "cpu", torch.float32, tmp_path, [], lora=True)
    finally:
        torch.set_num_threads(threads)
    assert arms is not None
    layers, base, jepa = arms
    assert layers == 1 and base["s_per_step"] > 0 and jepa["ema_update_s"] > 0
    backbone_less_head = bench.train_params(1, sizes["width"], sizes["mlp_hidden"], sizes["vocab"]) - (
        sizes["vocab"] * sizes["width"])
    assert 0 < jepa["ema_params"] < 0.5 * backbone_less_head  # adapters, not the backbone


@pytest.mark.gpu
def test_bench_gpu_cuda_path_with_compile_at_toy_size(monkeypatch, capsys):
    """The CUDA-only code (compiled generation and forward, layer counts from the card, peak memory) at
    toy sizes; fp32 so that the reference and ours must agree token for token."""
    from dataclasses import replace

    bench = load_bench_gpu(monkeypatch)
    setting = replace(bench.CPU_PLAN.setting, device="cuda")
    plan = replace(bench.CPU_PLAN, setting=setting, use_compile=True)
    assert bench.run(plan, train_compile=False) == 0
    out = capsys.readouterr().out
    assert "graphs compiled: 2" in out, out[-3000:]
    assert sum(line.startswith(("| sgd | ", "| adamw | ")) for line in out.splitlines()) == 3, out[-3000:]
