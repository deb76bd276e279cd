"""MMLU-500: the paper's sanity check, 500 test questions spread over the 57 subjects, scored by the
likelihood of " A".." D" (zero-shot). Not a training source.

Data: <data_dir>/mmlu/test/<subject>_test.csv (the release's data/test, no header), or one of
mmlu/test.{jsonl,csv,parquet}, else the hub's cais/mmlu (all): test 14,042. Docs {question, subject,
choices (4 strings), answer (index 0-3)}. Prompt (lm-eval's `mmlu` format): "The following are multiple
choice questions (with answers) about {subject}.\\n\\n{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:"
-> " {A|B|C|D}".
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion.prompts import MMLU_LETTERS as LETTERS
from lm_eval_diffusion.task_data import TaskDataError, load_docs, load_hub, read_jsonl, task_folder
from lm_eval_diffusion.task_registry import TaskSpec

log = logging.getLogger(__name__)

NAME = "mmlu"
DOWNLOAD_HINT = ("the MMLU release (hendrycks/test, data.tar) with its data/test/<subject>_test.csv files as "
                 "<data_dir>/mmlu/test/, or cais/mmlu (config all, split test) saved as <data_dir>/mmlu/test.jsonl "
                 "with columns question, subject, choices (list of 4), answer (index 0-3)")

# MMLU-500 (paper: "approximately 8-9 questions per subject across all 57 subjects, fixed seed"):
# 500 = 44 x 9 + 13 x 8; which 44 subjects get the ninth question, and the questions within each
# subject, are drawn with this seed (see `balanced_sample`).
MMLU_SUBSET_SIZE = 500
MMLU_SUBSET_SEED = 1234
MMLU_NUM_SUBJECTS = 57
MMLU_LOCAL_FILES = ("test.jsonl", "test.csv", "test.parquet")
MMLU_RELEASE_DIR = "test"  # the original release (hendrycks/test, data.tar): test/<subject>_test.csv, no header
MMLU_COLUMNS = ("question", "subject", "choices", "answer")


def load(split: str, root: Path | None, options: Mapping[str, Any]) -> list[dict]:
    """Every test question, subjects in name order."""
    rows = load_hub(NAME, split) if root is None else _local_rows(task_folder(NAME, root))
    return [_doc(row, i) for i, row in enumerate(rows)]


def _local_rows(folder: Path) -> list[dict]:
    present = [folder / name for name in MMLU_LOCAL_FILES if (folder / name).is_file()]
    release = folder / MMLU_RELEASE_DIR
    if release.is_dir():
        present.append(release)
    if len(present) != 1:
        found = "none" if not present else ", ".join(p.name for p in present)
        raise TaskDataError(
            f"{folder} must hold exactly one of {MMLU_LOCAL_FILES + (MMLU_RELEASE_DIR + '/',)} (found {found}); "
            f"see {DOWNLOAD_HINT}"
        )
    path = present[0]
    if path == release:
        return _release_rows(release)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            # A CSV cell cannot hold a list: choices are stored as a JSON list, as pandas/datasets write them.
            if isinstance(row.get("choices"), str):
                row["choices"] = json.loads(row["choices"])
        return rows
    import datasets

    return [dict(row) for row in datasets.Dataset.from_parquet(str(path))]


def _release_rows(folder: Path) -> list[dict]:
    """Rows of the original release's test/<subject>_test.csv files (no header: question, A, B, C, D,
    answer letter), subjects in name order as in the hub's `all` config."""
    files = sorted(folder.glob("*_test.csv"))
    if not files:
        raise TaskDataError(f"{folder} has no <subject>_test.csv files; see {DOWNLOAD_HINT}")
    rows = []
    for path in files:
        subject = path.name[: -len("_test.csv")]
        with path.open(encoding="utf-8", newline="") as handle:
            for number, record in enumerate(csv.reader(handle), 1):
                if len(record) != 6:
                    raise TaskDataError(f"{path}:{number}: expected 6 columns (question, A, B, C, D, answer), "
                                        f"got {len(record)}")
                rows.append({"question": record[0], "subject": subject, "choices": record[1:5], "answer": record[5]})
    return rows


def _doc(row: dict[str, Any], index: int) -> dict:
    absent = [c for c in MMLU_COLUMNS if c not in row]
    if absent:
        raise TaskDataError(f"MMLU row {index} lacks columns {absent}; expected {MMLU_COLUMNS}")
    choices = [str(c) for c in row["choices"]]
    answer = row["answer"]
    if isinstance(answer, str):
        answer = "ABCD".index(answer.strip()) if answer.strip() in ("A", "B", "C", "D") else int(answer)
    if len(choices) != 4 or not 0 <= int(answer) < 4:
        raise TaskDataError(f"MMLU row {index}: need 4 choices and an answer in 0-3, got {choices!r}, {answer!r}")
    return {"question": str(row["question"]), "subject": str(row["subject"]), "choices": choices, "answer": int(answer)}


def balanced_sample(
    docs: list[dict], num_docs: int = MMLU_SUBSET_SIZE, seed: int = MMLU_SUBSET_SEED, key: str = "subject"
) -> list[dict]:
    """`num_docs` docs spread evenly over the values of `key` (MMLU-500: 8 or 9 per subject), in input order.

    With S values, each gets num_docs // S and num_docs % S of them (drawn with `random.Random(seed)`
    from the sorted value names) get one more: 500 over 57 subjects is 44 x 9 + 13 x 8. Within a value,
    its docs are drawn with `random.Random(f"{seed}/{value}")`, so the selection depends only on the seed
    and that value's own docs: every model and every run gets the same items. Fewer docs than
    `num_docs` in all (toy data) are returned whole.
    """
    if num_docs >= len(docs):
        log.warning("only %d docs, not more than the %d asked for: using all of them", len(docs), num_docs)
        return list(docs)
    groups: dict[str, list[int]] = defaultdict(list)
    for index, doc in enumerate(docs):
        groups[doc[key]].append(index)
    names = sorted(groups)
    if num_docs < len(names):
        raise ValueError(f"cannot cover {len(names)} values of {key!r} with {num_docs} docs")
    base, extra = divmod(num_docs, len(names))
    larger = set(random.Random(seed).sample(names, extra))
    counts = {name: base + (name in larger) for name in names}
    short = {name: len(groups[name]) for name in names if len(groups[name]) < counts[name]}
    if short:
        raise ValueError(f"values of {key!r} with fewer docs than their share ({base} or {base + 1}): {short}")
    chosen = sorted(
        index for name in names for index in random.Random(f"{seed}/{name}").sample(groups[name], counts[name])
    )
    return [docs[i] for i in chosen]


def load_mmlu_subset(
    data_dir: str | Path | None = None, num_docs: int = MMLU_SUBSET_SIZE, seed: int = MMLU_SUBSET_SEED
) -> list[dict]:
    """MMLU-500: `num_docs` test questions, 8 or 9 from each subject (`balanced_sample`)."""
    docs = load_docs(NAME, "test", data_dir)
    num_subjects = len({doc["subject"] for doc in docs})
    if num_subjects != MMLU_NUM_SUBJECTS:
        log.warning("MMLU test data has %d subjects, not %d: MMLU-500 spreads %d questions over those",
                    num_subjects, MMLU_NUM_SUBJECTS, num_docs)
    return balanced_sample(docs, num_docs, seed)


def text(doc: dict) -> str:
    """Subject header, question and lettered choices, ending at "Answer:"."""
    # MMLU is fixed at zero-shot, so the per-subject header lm-eval puts in `description` lives here.
    subject = doc["subject"].replace("_", " ")
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, doc["choices"]))
    return (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        f"{doc['question'].strip()}{options}\nAnswer:"
    )


def target(doc: dict) -> str:
    """The gold letter."""
    return LETTERS[doc["answer"]]


SPEC = TaskSpec(
    name=NAME,
    splits=("test",),
    load=load,
    text=text,
    target=target,
    eval_tasks=("mmlu_500",),
    is_training_source=False,
    hub=("cais/mmlu", "all"),
    download_hint=DOWNLOAD_HINT,
    lm_eval_splits=lambda data_dir, options: {"test": load_mmlu_subset(data_dir)},
)
