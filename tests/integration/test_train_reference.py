"""Training results pinned bit for bit: refactors of the trainer must not change a single weight.

The reference is the tiny JEPA run of `tiny_jepa.yaml` on the torch engine for 30 optimizer steps, in a
subprocess with one OpenMP thread (thread count changes float summation order). Its `final/` model, the
predictor and the EMA target are committed under tests/assets/train_reference/ with the torch version
and CPU capability that made them; on another version or capability the float order may differ, so the
test skips and names the difference instead of failing. A change that alters training numbers on
purpose regenerates the reference and says why in its commit:

    OMP_NUM_THREADS=1 python tests/integration/test_train_reference.py --regenerate
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "assets" / "train_reference"
FILES = {"model": "model.safetensors", "predictor": "jepa/predictor.safetensors", "ema": "jepa/ema.safetensors"}
COMMAND = ["dllm_jepa_train/main.py", "--config", "dllm_jepa_train/configs/tiny_jepa.yaml",
           "--run.engine", "torch", "--optim.max_steps", "30"]


def _environment() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _train(out: Path) -> Path:
    """Run the reference command into `out`; its `final/` folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, *COMMAND, "--run.output_dir", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "final"


@pytest.mark.slow
@pytest.mark.subprocess
def test_tiny_jepa_run_reproduces_the_committed_weights(tmp_path):
    meta = json.loads((REFERENCE / "meta.json").read_text())
    here = _environment()
    differ = {k: (meta[k], here[k]) for k in here if meta[k] != here[k]}
    if differ:
        pytest.skip(f"reference made under another float order (committed vs here): {differ}")
    final = _train(tmp_path / "run")
    for name, rel in FILES.items():
        expected, got = load_file(REFERENCE / f"{name}.safetensors"), load_file(final / rel)
        assert sorted(got) == sorted(expected), f"{name}: tensor names changed"
        changed = [k for k in expected if not torch.equal(got[k], expected[k])]
        worst = max(((got[k] - expected[k]).abs().max().item() for k in changed), default=0.0)
        assert not changed, f"{name}: {len(changed)} tensors differ (largest |diff| {worst:.3g}): {changed[:5]}"


def _regenerate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        final = _train(Path(tmp) / "run")
        REFERENCE.mkdir(parents=True, exist_ok=True)
        for name, rel in FILES.items():
            shutil.copyfile(final / rel, REFERENCE / f"{name}.safetensors")
    meta = {**_environment(), "command": " ".join(["OMP_NUM_THREADS=1 python", *COMMAND])}
    (REFERENCE / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {REFERENCE}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit(__doc__)
    _regenerate()
