"""NL-RX-SYNTH: English descriptions -> dk.brics regular expressions, scored by exact, functional and
DFA equivalence (lm_eval_diffusion.metrics.regex documents each metric).

Data: <data_dir>/nlrx/synth_{src,targ}.txt, 10,000 aligned lines and no hub copy. The release has no
split; ours is a seeded shuffle of the line indices cut 65% / 10% / rest (6,500 / 1,000 / 2,500).
Prompt: "Description: {description}\\nRegex:" -> " {regex}".
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion.task_data import DATA_ENV, TaskDataError, read_lines, require_file, task_folder
from lm_eval_diffusion.task_registry import TaskSpec

NAME = "nlrx"
DOWNLOAD_HINT = ("nicholaslocascio/deep-regex: datasets/NL-RX-Synth/src.txt and targ.txt, saved as "
                 "<data_dir>/nlrx/synth_src.txt and <data_dir>/nlrx/synth_targ.txt")

# The original tokenised 6,500/1,000/2,500 split is not part of the release, so we shuffle the line
# indices with this seed (Python's `random.Random`, whose shuffle is stable across CPython versions).
NLRX_SPLIT_SEED = 20240601
NLRX_SPLIT_FRACTIONS = (0.65, 0.10)  # train, validation; test is the remainder
FUNC_MATCH_STRINGS = 200  # the paper's count, for both functional metrics
FUNC_MATCH_TARGETED_SEED = 0


def nlrx_split_indices(num_lines: int, seed: int = NLRX_SPLIT_SEED) -> dict[str, list[int]]:
    """Seeded train/validation/test line indices (6,500 / 1,000 / 2,500 for 10,000 lines), each sorted."""
    order = list(range(num_lines))
    random.Random(seed).shuffle(order)
    num_train = int(num_lines * NLRX_SPLIT_FRACTIONS[0])
    num_validation = int(num_lines * NLRX_SPLIT_FRACTIONS[1])
    return {
        "train": sorted(order[:num_train]),
        "validation": sorted(order[num_train : num_train + num_validation]),
        "test": sorted(order[num_train + num_validation :]),
    }


def load(split: str, root: Path | None, options: Mapping[str, Any]) -> list[dict]:
    """{line, description, regex} docs of one split; line = 0-based line number in the release files."""
    if root is None:
        raise TaskDataError(
            f"NL-RX-SYNTH has no Hugging Face hub copy: download {DOWNLOAD_HINT} and set ${DATA_ENV} "
            "(or --metadata data_dir) to <data_dir>"
        )
    folder = task_folder(NAME, root)
    sources = read_lines(require_file(folder / "synth_src.txt", NAME))
    targets = read_lines(require_file(folder / "synth_targ.txt", NAME))
    if len(sources) != len(targets):
        raise TaskDataError(f"{folder}: synth_src.txt has {len(sources)} lines but synth_targ.txt {len(targets)}")
    return [
        {"line": i, "description": sources[i].strip(), "regex": targets[i].strip()}
        for i in nlrx_split_indices(len(sources))[split]
    ]


def text(doc: dict) -> str:
    """The description prompt, ending at "Regex:"."""
    return f"Description: {doc['description']}\nRegex:"


def target(doc: dict) -> str:
    """The gold regex (dk.brics syntax)."""
    return doc["regex"]


def clean_prediction(output: str) -> str:
    """The regex a generation proposes: its first line, stripped (a regex never spans lines)."""
    return output.strip().split("\n", 1)[0].strip()


def has_trailing_text(output: str) -> bool:
    """Whether the stripped output goes on after its first line."""
    return "\n" in output.strip()


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Scores of one generation (lm_eval_diffusion.metrics.regex documents each metric).

    On the first output line: exact_match, func_match (200 random strings, the paper's reading),
    func_match_targeted (200 difference-seeking strings), dfa_match, and stop_artifact (the first
    line is dfa-correct and more text follows it: a raw score would fail it). On the raw output:
    startswith_match (Table 14's lenient metric).
    """
    from lm_eval_diffusion.metrics import regex  # the automata: only when scoring

    pred, gold = clean_prediction(results[0]), doc["regex"]
    is_dfa_match = regex.dfa_match(pred, gold)
    return {
        "exact_match": float(regex.exact_match(pred, gold)),
        "func_match": float(regex.func_match(pred, gold, num_strings=FUNC_MATCH_STRINGS)),
        "func_match_targeted": float(
            regex.func_match_targeted(
                pred, gold, num_strings=FUNC_MATCH_STRINGS, seed=FUNC_MATCH_TARGETED_SEED
            )
        ),
        "dfa_match": float(is_dfa_match),
        "startswith_match": float(regex.startswith_match(results[0], gold)),
        "stop_artifact": float(is_dfa_match and has_trailing_text(results[0])),
    }


SPEC = TaskSpec(
    name=NAME,
    splits=("train", "validation", "test"),
    load=load,
    text=text,
    target=target,
    eval_tasks=("nlrx_synth", "nlrx_synth_0shot"),
    download_hint=DOWNLOAD_HINT,
    metrics={"process_results": process_results},
)
