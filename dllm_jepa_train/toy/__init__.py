"""Toy-scale stand-ins for the real inputs: synthetic task data, tiny LLaDA-/Dream-like models and
their tokenizers, and the staged demo. Nothing here is needed to train or evaluate a real checkpoint;
the trainer, the analysis commands, the tests and the benchmarks use it only for offline CPU runs.

The trainer sees toy inputs as ordinary names: `model.pretrained: toy:llada` (or `toy:dream`,
`toy:generic`) and `data.source: toy:gsm8k` (or any task, or `toy:text`). `dllm_jepa_train.toy.inputs`
turns them into a checkpoint folder and a data folder in the releases' layout. This module only names
them, so the config can validate a toy name without importing torch.
"""

from __future__ import annotations

from lm_eval_diffusion import FAMILIES
from lm_eval_diffusion.task_data import TASKS

TOY_PREFIX = "toy:"
TOY_MODELS = FAMILIES  # toy:<family> builds a tiny model of that family
TOY_DATA = TASKS + ("text",)  # toy:<task> generates every synthetic dataset and reads that one


def toy_name(value: str) -> str | None:
    """'toy:gsm8k' -> 'gsm8k'; anything without the prefix -> None."""
    return value[len(TOY_PREFIX):] if value.startswith(TOY_PREFIX) else None
