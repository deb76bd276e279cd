"""The README's first command at CI size: the whole pipeline through the real deepspeed and lm_eval
commands, then a rerun that reuses every stage, and a failing stage that names itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dllm_jepa_train.toy import demo

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "dllm_jepa_train.toy.demo", "--size", "small", "--root", str(root)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)
    return root, proc


@pytest.mark.slow
def test_small_demo_runs_every_stage_and_prints_the_comparison(small_demo):
    root, proc = small_demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((root / "stages.json").read_text())
    assert list(state["done"]) == [name for name, _ in demo.STAGES]
    for model in demo.MODELS:
        assert (root / model / "final" / "model.safetensors").exists()
        results = list((root / "eval" / model).rglob("results_*.json"))
        assert len(results) == 1, results
        scores = json.loads(results[0].read_text())["results"]
        assert {"gsm8k_dllm_demo", "spider_exec_demo", "nlrx_synth_demo", "django_code_demo"} <= set(scores)
        assert 0.0 <= scores["spider_exec_demo"]["exec_match,none"] <= 1.0
    # The JEPA run trained a predictor and an EMA target; the baseline built neither.
    for name in ("predictor.safetensors", "ema.safetensors"):
        assert (root / "jepa" / "final" / "jepa" / name).stat().st_size > 0
        assert not (root / "baseline" / "final" / "jepa" / name).exists()
    assert json.loads((root / "baseline" / "final" / "jepa" / "config.json").read_text())["lambda"] == 0.0
    probe = json.loads((root / "analysis" / "probe.json").read_text())
    assert len(probe["finetunes"]) == 2 and all(f["loss"] > 0 for f in probe["finetunes"])
    table = (root / "compare" / "compare.md").read_text()
    for task in ("gsm8k_dllm_demo", "spider_exec_demo", "nlrx_synth_demo", "django_code_demo"):
        assert task in table and task in proc.stdout
    for png in ("drift_curves.png", "drift_vs_forgetting.png"):
        assert (root / "compare" / png).stat().st_size > 1000
    assert "Stage times (seconds):" in proc.stdout and "total" in proc.stdout


@pytest.mark.slow
def test_rerun_reuses_finished_stages(small_demo):
    root, first = small_demo
    assert first.returncode == 0
    proc = subprocess.run([sys.executable, "-m", "dllm_jepa_train.toy.demo", "--size", "small", "--root", str(root)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("reused") == len(demo.STAGES)


def test_failing_stage_names_itself_and_keeps_earlier_stages(tmp_path, monkeypatch, capsys):
    def broken(root, size, env):
        raise ValueError("synthetic failure")

    stages = [("data", lambda root, size, env: None), ("pretrain", broken)]
    monkeypatch.setattr(demo, "STAGES", stages)
    assert demo.main(["--size", "small", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stage 'pretrain' failed: ValueError: synthetic failure" in err
    assert list(json.loads((tmp_path / "stages.json").read_text())["done"]) == ["data"]


def test_failing_command_points_at_its_log(tmp_path):
    with pytest.raises(demo.StageError, match=r"stage 'eval_base' failed: .* exited with 3; full log: .*x\.log"):
        demo.run_logged([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                        tmp_path / "x.log", {}, "eval_base")
    assert "boom" in (tmp_path / "x.log").read_text()


def test_size_mismatch_with_an_existing_root_is_refused(tmp_path):
    (tmp_path / "stages.json").write_text(json.dumps({"size": "default", "done": {}}))
    with pytest.raises(demo.StageError, match="holds a 'default' demo"):
        demo.run_demo(tmp_path, "small")
