#!/usr/bin/env bash
# README command 1: install into a virtualenv and run the whole pipeline on toy data, offline, on a CPU:
# synthetic data -> tiny base pre-trained -> baseline and DLLM-JEPA fine-tunes (deepspeed) ->
# lm_eval on all three -> probe, drift, comparison table, plots and the summary table. Arguments go to
# the demo (--seeds N, --size small, --fresh, --root DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="$(bash scripts/setup_venv.sh)"
exec "$VENV/bin/python" -m dllm_jepa_train.toy.demo "$@"
