#!/usr/bin/env bash
# README command 2: install into a fresh virtualenv and run the whole test suite (offline, CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(bash scripts/setup_venv.sh)"
exec "$VENV/bin/python" -m pytest -q "$@"
