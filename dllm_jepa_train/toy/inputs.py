"""Resolve the trainer's toy names into ordinary inputs: a data folder and a checkpoint folder.

    data.source toy:<task>      -> <output_dir>/data, every synthetic dataset in the releases' layout
                                   (written once; a rerun or resume reuses it), read as source <task>
    model.pretrained toy:<fam>  -> <output_dir>/base, a byte-level BPE tokenizer trained on the run's
                                   training text plus the synthetic text corpus, and a randomly
                                   initialised tiny model of family <fam> sized by the `tiny` section

Both are written by rank 0 only; the caller synchronises the ranks afterwards. `ToyResolver` is the
`toy:` resolver that `dllm_jepa_train.toy.register` hands to `dllm_jepa_train.plugins`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from dllm_jepa_train.toy import TOY_DATA, TOY_MODELS, TOY_PREFIX, toy_name

if TYPE_CHECKING:
    from dllm_jepa_train.config import DataConfig, TinyConfig

DATA_MARKER = "README.md"  # written last by synthetic.generate_all: its presence means the folder is complete


@dataclass(frozen=True)
class ToyTask:
    """What the toy package knows about a registered task it writes synthetic data for: the demo's defaults.
    `register_tasks` attaches one per task to `lm_eval_diffusion.task_registry` under the key TASK_KEY."""

    canvas: int  # the demo's answer canvas in tokens: tasks/demo/<task>_demo.yaml's max_gen_toks (a test checks)
    mixture_passes: float  # passes over the task's training rows (after the demo's row cap) per fine-tuning epoch


TASK_KEY = "toy"
# Passes: where the demo fine-tune's minutes show learning. Measured on the demo pipeline (single seeds,
# exact match, baseline / JEPA): Django's lines are the shortest rows (~30 tokens) and copying their names
# the slowest skill here (one pass: 0.13 / 0.08; four: 0.37 / 0.38, both before the held-out cap of
# toy.synthetic; after it, four: 0.47 / 0.50 and 0.38 / 0.30); GSM8K's 61 facts want all its questions
# (600: 0.23 to 0.57; 1,000: 0.80 / 0.38). Spider's schema prompts make its rows three times the others',
# and it and NL-RX learn little here either way, so they get fewer rows. Both methods always get the same
# mixture. Canvases are whole denoising blocks of 16 (toy.demo.BLOCK_LENGTH); Spider's queries are the longest.
TOY_TASKS = {
    "gsm8k": ToyTask(canvas=16, mixture_passes=1.0),
    "spider": ToyTask(canvas=32, mixture_passes=0.4),
    "nlrx": ToyTask(canvas=16, mixture_passes=0.5),
    "django": ToyTask(canvas=16, mixture_passes=3.5),
}


def register_tasks() -> None:
    """Attach TOY_TASKS to the task registry (the toy's entry point calls this; toy -> registry)."""
    from lm_eval_diffusion import task_registry

    for task, facts in TOY_TASKS.items():
        task_registry.attach(task, TASK_KEY, facts)


def toy_task(source: str) -> str:
    """'toy:<task>' -> <task>; ValueError naming the allowed toy sources for any other name."""
    task = toy_name(source)
    if task not in TOY_DATA:
        raise ValueError(f"data.source {source!r}: allowed toy sources are "
                         f"{', '.join(TOY_PREFIX + t for t in TOY_DATA)}")
    return task


def prepare_data(source: str, out_dir: Path, seed: int, scale: float) -> tuple[str, Path]:
    """'toy:<task>' -> (<task>, data folder), generating the synthetic data into `out_dir` once."""
    from dllm_jepa_train.toy.synthetic import generate_all

    task = toy_task(source)
    if not (out_dir / DATA_MARKER).is_file():
        generate_all(out_dir, seed=seed, scale=scale)
    return task, out_dir


def prepare_model(name: str, out_dir: Path, corpus: Iterable[str], *, hidden_size: int, num_layers: int,
                  num_heads: int, vocab_size: int, seed: int) -> Path:
    """'toy:<family>' -> a tiny checkpoint in `out_dir` (built once; an existing one is reused)."""
    from dllm_jepa_train.toy.models import build_tiny_checkpoint, build_tokenizer

    family = toy_name(name)
    if family not in TOY_MODELS:
        raise ValueError(f"model.pretrained {name!r}: allowed toy models are "
                         f"{', '.join('toy:' + f for f in TOY_MODELS)}")
    if not (out_dir / "config.json").is_file():
        tokenizer = build_tokenizer(list(corpus), vocab_size=vocab_size)
        build_tiny_checkpoint(out_dir, family, tokenizer, hidden_size=hidden_size, num_layers=num_layers,
                              num_heads=num_heads, seed=seed)
    return out_dir


class ToyResolver:
    """The `toy:` names as a `dllm_jepa_train.plugins.Resolver`."""

    def names(self, kind: str) -> tuple[str, ...]:
        """toy:<family> for 'model', toy:<task or text> for 'data'."""
        return tuple(TOY_PREFIX + n for n in {"model": TOY_MODELS, "data": TOY_DATA}[kind])

    def data_source(self, name: str) -> str:
        return toy_task(name)

    def prepare_data(self, name: str, out_dir: Path, data: DataConfig) -> None:
        prepare_data(name, out_dir, data.generate_seed, data.generate_scale)

    def prepare_model(self, name: str, out_dir: Path, corpus: list[str], tiny: TinyConfig) -> None:
        prepare_model(name, out_dir, corpus, hidden_size=tiny.hidden_size, num_layers=tiny.num_layers,
                      num_heads=tiny.num_heads, vocab_size=tiny.vocab_size, seed=tiny.seed)
