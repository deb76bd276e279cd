"""Toy-scale stand-ins for the real inputs: synthetic task data, tiny LLaDA-/Dream-like models and
their tokenizers, and the staged demo. Nothing here is needed to train or evaluate a real checkpoint;
the trainer, the analysis commands, the tests and the benchmarks use it only for offline CPU runs.

The trainer sees toy inputs as ordinary names: `model.pretrained: toy:llada` (or `toy:dream`,
`toy:generic`) and `data.source: toy:gsm8k` (or any task, or `toy:text`). The package is a plug-in:
pyproject.toml declares `register` in the entry-point group `dllm_jepa.plugins`, and production code
reaches it only through `dllm_jepa_train.plugins`, which calls `register` before resolving a `toy:`
name; `dllm_jepa_train.toy.inputs.ToyResolver` turns the names into a checkpoint folder and a data
folder in the releases' layout. This module only names them and imports no torch, so the config can
validate a toy name cheaply. The demo (`toy.demo`, `toy.report`) is an app on top of the production
code; nothing outside this package imports it.
"""

from __future__ import annotations

from dllm_jepa_train.toy.models import TINY_MODELS

TOY_PREFIX = "toy:"
TOY_MODELS = tuple(TINY_MODELS)  # toy:<family> builds a tiny model of that registry family
# toy:<task> generates every synthetic dataset and reads that one: the registered tasks toy.synthetic
# writes (inputs.TOY_TASKS, attached to the task registry by `register`), and its text corpus.
TOY_DATA = ("gsm8k", "spider", "nlrx", "django", "text")


def toy_name(value: str) -> str | None:
    """'toy:gsm8k' -> 'gsm8k'; anything without the prefix -> None."""
    return value[len(TOY_PREFIX):] if value.startswith(TOY_PREFIX) else None


def register() -> None:
    """Entry point of group `dllm_jepa.plugins`: register the `toy:` resolver, attach the toy's facts
    about each task it generates (its demo defaults) to the task registry, and add the tiny models' LoRA
    module names to their families' registry entries (toy -> registries)."""
    from dllm_jepa_train.plugins import register_resolver
    from dllm_jepa_train.toy.inputs import ToyResolver, register_tasks

    register_resolver(TOY_PREFIX.rstrip(":"), ToyResolver())
    register_tasks()
    register_tiny_lora_targets()


def register_tiny_lora_targets() -> None:
    """The llada and dream entries also find LoRA's default modules in the tiny models' blocks
    (`models.TINY_LORA_TARGETS`); the real models' defaults are unchanged (no real module has these names)."""
    import dataclasses

    from dllm_jepa_train.toy.models import TINY_LORA_BLOCKS, TINY_LORA_TARGETS
    from lm_eval_diffusion.families import get_family, register_family

    for name in ("llada", "dream"):
        family = get_family(name)
        if set(TINY_LORA_TARGETS) <= set(family.lora_targets):
            continue  # registered already (the hook runs once per loader)
        blocks = (family.lora_blocks if family.lora_blocks == TINY_LORA_BLOCKS
                  else f"(?:{family.lora_blocks}|{TINY_LORA_BLOCKS})")
        targets = family.lora_targets + tuple(t for t in TINY_LORA_TARGETS if t not in family.lora_targets)
        register_family(dataclasses.replace(family, lora_blocks=blocks, lora_targets=targets), replace=True)
