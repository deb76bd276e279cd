"""A sweep end to end: its launch.sh under the deepspeed launcher, its eval.sh under lm_eval, then compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dllm_jepa_train.sweep import main
from train_helpers import write_jsonl

PROJECT = Path(__file__).resolve().parents[2]
TINY = str(PROJECT / "dllm_jepa_train" / "configs" / "tiny_jepa.yaml")
# One swept key: 2 JEPA runs + the baseline. The two-key (λ × k) grid is the same code path in the sweep
# (tests/integration/test_sweep.py) and in compare (tests/integration/test_analysis.py); here each extra run
# costs a launcher and an lm_eval start-up (~25 s each on 2 cores).
GRID = ["--config", TINY, "--grid", "jepa.lambda=0.5,1"]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(2400)  # two scripts of up to 1,800 s each
def test_a_grid_runs_through_launch_sh_and_eval_sh_and_compare_prints_the_table(tmp_path, tiny_checkpoints):
    """CI budget: 3 tiny runs of 2 optimizer steps under the deepspeed launcher, 3 lm_eval runs on 2 docs,
    nearly all of it the start-up of 6 launcher / accelerate processes."""
    data = write_jsonl(tmp_path / "train.jsonl")
    out = tmp_path / "sweep"
    venv_bin = Path(sys.executable).parent
    assert main([*GRID, "--seeds", "7", "--out", str(out), "--launcher-args", "--num_gpus 1 --master_port 29517",
                 "--set", f"model.pretrained={tiny_checkpoints['llada']}",
                 "--set", "data.source=jsonl", "--set", f"data.path={data}", "--set", "data.max_length=48",
                 "--set", "optim.max_steps=2", "--set", "run.save_every=0", "--set", "jepa.collapse_every=0",
                 "--eval-tasks", "tiny_echo", "--model-args", "steps=2,gen_length=4,block_length=4",
                 "--eval-args", f"--include_path {PROJECT / 'tests/assets/tiny_task'} --limit 2 --device cpu",
                 "--eval-launcher", "accelerate launch --cpu --num_processes 1"]) == 0
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1",
           "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for script in ("launch.sh", "eval.sh"):
        proc = subprocess.run(["bash", str(out / script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1800, check=False)
        assert proc.returncode == 0, (script, proc.stdout[-3000:], proc.stderr[-3000:])
    assert len(list((out / "eval").rglob("results_*.json"))) == 3
    proc = subprocess.run([sys.executable, "-m", "dllm_jepa_train.analysis", "compare", "--results", str(out / "eval"),
                           "--out", str(out / "report")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Grid: jepa over λ, tiny_echo exact_match,none" in proc.stdout
    assert "| λ | jepa |" in proc.stdout and "| 0.5 | " in proc.stdout and "| 1 | " in proc.stdout
    report = json.loads((out / "report" / "compare.json").read_text())
    (grid,) = report["grids"]
    assert {(c["row"], c["col"]) for c in grid["cells"]} == {(0.5, None), (1.0, None)}
    assert grid["baseline"]["n"] == 1 and (out / "report" / "grid_1.png").stat().st_size > 1024
