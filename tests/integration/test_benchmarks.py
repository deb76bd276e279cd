"""The benchmark scripts keep running against the code they measure (they import the trainer's internals)."""

from __future__ import annotations

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
