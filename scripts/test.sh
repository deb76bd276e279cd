#!/usr/bin/env bash
# README command 2: install into a fresh virtualenv and run the whole test suite (offline, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(bash scripts/setup_venv.sh)"
# Two workers, one per core of a CI machine; each module's tests stay in one worker, so a module
# fixture (a launcher run, the demo) runs once. Later options win: `-n 0` runs in one process.
exec "$VENV/bin/python" -m pytest -q -n "${DLLM_JEPA_TEST_WORKERS:-2}" --dist loadscope "$@"
