"""Whole runs under the real `deepspeed` launcher (ZeRO-2, one CPU process) and plain `python main.py`.

The first DeepSpeed run on a machine JIT-builds its CPU communication op (about a minute); later runs
reuse it. The launcher runs are shared by the tests through a module fixture.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_helpers import flags, write_jsonl

from dllm_jepa_train.config import load_config
from dllm_jepa_train.build import build_trainer

pytestmark = [pytest.mark.slow, pytest.mark.subprocess]

PROJECT = Path(__file__).resolve().parents[2]
MAIN = PROJECT / "dllm_jepa_train" / "main.py"
CONFIGS = PROJECT / "dllm_jepa_train" / "configs"
COMMON = ["--optim.max_steps", "5", "--optim.grad_accum", "2", "--run.save_every", "2", "--anchor.l2_lambda", "0.5"]


def _env() -> dict[str, str]:
    """No PYTHONPATH (main.py must find the project from its own path) and one thread per process."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def launch(args: list[str], cwd: Path, num_ranks: int = 1) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).parent / "deepspeed"
    assert launcher.is_file(), f"the deepspeed launcher is not installed beside {sys.executable}"
    cmd = [str(launcher), "--num_gpus", str(num_ranks), "--master_port", _free_port(), str(MAIN), *args]
    return subprocess.run(cmd, check=False, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_checkpoints) -> dict[str, Path]:
    """An uninterrupted launcher run, and one killed by SIGKILL in step 3 then resumed."""
    root = tmp_path_factory.mktemp("ds")
    data = write_jsonl(root / "train.jsonl")
    ckpt = tiny_checkpoints["llada"]
    out = {"data": data}
    full = launch(flags(ckpt, data, root / "full", *COMMON, engine="deepspeed"), root)
    assert full.returncode == 0, full.stdout[-3000:] + full.stderr[-3000:]
    out["full"] = root / "full"
    killed = launch(flags(ckpt, data, root / "killed", *COMMON, "--run.debug_sigkill_at_step", "3",
                          engine="deepspeed"), root)
    assert killed.returncode != 0
    assert (root / "killed" / "checkpoints" / "latest").read_text() == "step_2"
    assert not (root / "killed" / "final").exists()
    resumed = launch(flags(ckpt, data, root / "killed", *COMMON, "--run.resume", "auto", engine="deepspeed"), root)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr + resumed.stdout
    out["resumed"] = root / "killed"
    return out


def _weights(final: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("model.safetensors", "jepa/predictor.safetensors", "jepa/ema.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(final / name)).items()})
    return out


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_deepspeed_run_writes_config_checkpoints_and_export(runs):
    run = runs["full"]
    ds = json.loads((run / "deepspeed_config.json").read_text())
    assert ds["zero_optimization"]["stage"] == 2 and ds["gradient_accumulation_steps"] == 2
    assert load_config(run / "config.yaml").anchor.l2_lambda == 0.5
    assert (run / "checkpoints" / "latest").read_text() == "step_4"
    assert (run / "checkpoints" / "step_4" / "engine" / "engine").is_dir()
    assert [m["step"] for m in _metrics(run)] == [1, 2, 3, 4, 5]
    from lm_eval_diffusion.backbone import load_backbone

    assert load_backbone(str(run / "final"), probe_padding=False).spec.family == "llada"


def test_deepspeed_zero2_matches_the_torch_engine_including_the_anchor(runs, tiny_checkpoints, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention
    try:
        _compare_with_torch_engine(runs, tiny_checkpoints["llada"], tmp_path)
    finally:
        torch.set_num_threads(threads)


def _compare_with_torch_engine(runs, ckpt: Path, tmp_path: Path) -> None:
    reference = build_trainer(load_config(None, flags(ckpt, runs["data"], tmp_path / "torch", *COMMON))).train()
    no_anchor = build_trainer(load_config(None, flags(ckpt, runs["data"], tmp_path / "plain", *COMMON[:-2]))).train()
    ds, ref, plain = _weights(runs["full"] / "final"), _weights(reference), _weights(no_anchor)
    # Same losses and gradient norms step by step: DeepSpeed's 1/accumulation and rank averaging are undone.
    for got, want in zip(_metrics(runs["full"]), _metrics(tmp_path / "torch")):
        for key in ("loss_diff", "loss_jepa", "grad_norm", "lr"):
            assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), (got["step"], key)
    worst = max((ds[k] - ref[k]).abs().max().item() for k in ref)
    anchor_effect = max((plain[k] - ref[k]).abs().max().item() for k in ref)
    assert worst < 5e-5 < anchor_effect / 10, (worst, anchor_effect)


def test_deepspeed_resume_after_sigkill_reaches_the_same_weights(runs):
    full, resumed = _weights(runs["full"] / "final"), _weights(runs["resumed"] / "final")
    assert set(full) == set(resumed)
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=1e-6, msg=key)
    assert [m["step"] for m in _metrics(runs["resumed"])] == [1, 2, 3, 4, 5]


def test_plain_python_tiny_config_builds_data_and_model_and_trains(tmp_path):
    out = tmp_path / "tiny"
    proc = subprocess.run([sys.executable, str(MAIN), "--config", str(CONFIGS / "tiny_baseline.yaml"),
                           "--run.output_dir", str(out), "--optim.max_steps", "3"], check=False, cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "data" / "gsm8k" / "train.jsonl").is_file() and (out / "base" / "config.json").is_file()
    assert json.loads((out / "deepspeed_config.json").read_text())["zero_optimization"]["stage"] == 2
    assert [m["step"] for m in _metrics(out)] == [1, 2, 3]
    assert (out / "final" / "modeling_llada_tiny.py").is_file()


def test_two_ranks_of_zero2_reach_the_weights_of_one_rank_with_accumulation(runs, tiny_checkpoints, tmp_path):
    """optim.global_batch_size 4 on 2 ranks (micro 2, accumulation 1) = the fixture's 1 rank x 2 x 2."""
    two = launch(flags(tiny_checkpoints["llada"], runs["data"], tmp_path / "two", *COMMON,
                       "--optim.global_batch_size", "4", engine="deepspeed"), tmp_path, num_ranks=2)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    assert "batch: 2 rank(s) x micro-batch 2 x accumulation 1 = 4 rows" in two.stdout + two.stderr
    assert json.loads((tmp_path / "two" / "deepspeed_config.json").read_text())["gradient_accumulation_steps"] == 1
    one, both = _weights(runs["full"] / "final"), _weights(tmp_path / "two" / "final")
    assert set(one) == set(both)
    worst = max((one[k] - both[k]).abs().max().item() for k in one)
    assert worst < 1e-4, worst
    for got, want in zip(_metrics(tmp_path / "two"), _metrics(runs["full"])):
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-5)


def test_identity_predictor_trains_the_tiny_config_under_the_launcher_and_exports_for_llada_diffusion(tmp_path):
    out = tmp_path / "nopred"
    proc = launch(["--config", str(CONFIGS / "tiny_jepa.yaml"), "--run.output_dir", str(out), "--optim.max_steps", "3",
                   "--jepa.predictor_depth", "0", "--run.save_every", "0"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "final" / "jepa" / "config.json").read_text())["predictor_depth"] == 0
    assert load_file(str(out / "final" / "jepa" / "predictor.safetensors")) == {}
    assert all(m["loss_jepa"] is not None for m in _metrics(out))
    from lm_eval.api.instance import Instance

    from lm_eval_diffusion.harness import DiffusionLM

    lm = DiffusionLM(pretrained=str(out / "final"), steps=4, gen_length=8, block_length=8, device="cpu")
    request = Instance("generate_until", {}, ("Question: 1 + 1 =", {"until": ["\n"], "max_gen_toks": 8}), 0)
    (text,) = lm.generate_until([request])
    assert isinstance(text, str)


def test_compiled_deepspeed_run_matches_eager_in_fp32(tmp_path, tiny_checkpoints):
    """model.compile under the DeepSpeed engine (ZeRO-2, plain python, fp32): the same losses, gradient norms
    and final weights as eager, to the torch-engine test's tolerances (tests/integration/test_train_compile.py)."""
    data = write_jsonl(tmp_path / "train.jsonl")
    common = [*COMMON, "--data.pad_to_max_length", "true", "--run.save_every", "0"]  # one shape per forward
    out = {}
    for name, switch in (("eager", "false"), ("compiled", "true")):
        args = flags(tiny_checkpoints["llada"], data, tmp_path / name, *common, "--model.compile", switch,
                     engine="deepspeed")
        proc = subprocess.run([sys.executable, str(MAIN), *args], check=False, cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        out[name] = proc.stdout + proc.stderr
    assert "compiled: online forward + EMA target forward" in out["compiled"]
    assert "compiled: off" in out["eager"]
    for got, want in zip(_metrics(tmp_path / "compiled"), _metrics(tmp_path / "eager"), strict=True):
        for key in ("loss", "loss_diff", "loss_jepa"):
            assert got[key] == pytest.approx(want[key], rel=1e-5, abs=0), (got["step"], key)
        assert got["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-4), got["step"]
    compiled, eager = _weights(tmp_path / "compiled" / "final"), _weights(tmp_path / "eager" / "final")
    assert set(compiled) == set(eager)
    for key in eager:
        torch.testing.assert_close(compiled[key], eager[key], rtol=0, atol=5e-5, msg=key)
