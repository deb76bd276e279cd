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

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from dllm_jepa_train.toy import TOY_DATA, TOY_MODELS, TOY_PREFIX, toy_name

if TYPE_CHECKING:
    from dllm_jepa_train.config import DataConfig, TinyConfig

DATA_MARKER = "README.md"  # written last by synthetic.generate_all: its presence means the folder is complete


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
