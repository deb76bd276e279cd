"""Loaders for the tiny CLI-test tasks: documents come from the jsonl files beside this file."""

import json
from pathlib import Path

import datasets

HERE = Path(__file__).resolve().parent


def _load(name: str) -> dict:
    rows = [json.loads(line) for line in (HERE / name).read_text().splitlines() if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}


def load_echo(**_metadata) -> dict:
    """lm-eval passes --model_args and task metadata as keywords; none are needed here."""
    return _load("tiny_echo.jsonl")


def load_choice(**_metadata) -> dict:
    """lm-eval passes --model_args and task metadata as keywords; none are needed here."""
    return _load("tiny_choice.jsonl")


def load_arith(**_metadata) -> dict:
    """lm-eval passes --model_args and task metadata as keywords; none are needed here."""
    return _load("tiny_arith.jsonl")
