#!/usr/bin/env bash
# Create (or refresh) the project virtualenv: CPU torch from its pinned wheel first, so that the
# project's `torch>=2.1` requirement is already met and pip never pulls a multi-GB CUDA build.
# Usage: source-free; prints the venv path on its last line. VENV overrides the location (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU)" >&2
    "$VENV/bin/pip" install -q torch==2.13.0 >&2
fi
# Non-editable on purpose: the wheel carries the lm-eval startup hook (.pth) and the task folder,
# exactly as users get them from `pip install .`.
echo "[setup] installing the project and its dependencies" >&2
"$VENV/bin/pip" install -q ".[dev]" >&2
"$VENV/bin/pip" install -q --no-deps --force-reinstall . >&2
echo "$VENV"
