"""Django: pseudo-code -> one line of Python (Oda et al., 2015), scored by the paper's stopping-robust
partition (lm_eval_diffusion.metrics.code, Table 5).

Data: <data_dir>/django/all.{anno,code} (18,805 aligned lines), else the hub's AhmedSSoliman/DJANGO.
The standard split is by line order: 0-15999 train, 16000-16999 validation, the rest test; a file of
another length (a synthetic stand-in) is cut at the same fractions. Docs {line, anno, code}, the code
without its (meaningless) leading indentation. Prompt: "Pseudo-code: {anno}\\nPython:" -> " {code}".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion.metrics import code as metric
from lm_eval_diffusion.task_data import TaskDataError, load_hub, read_lines, require_file, task_folder
from lm_eval_diffusion.task_registry import TaskSpec

NAME = "django"
DOWNLOAD_HINT = "odashi/ase15-django-dataset: django/all.anno and django/all.code into <data_dir>/django/"
HUB = ("AhmedSSoliman/DJANGO", None)

DJANGO_NUM_LINES = 18805
DJANGO_TRAIN_END = 16000
DJANGO_VALIDATION_END = 17000

# Column names the hub copy might use; the loader names what it found if none fit.
_HUB_NL_COLUMNS = ("nl", "anno", "intent", "text", "input")
_HUB_CODE_COLUMNS = ("code", "snippet", "output")


def django_split_range(split: str, num_lines: int) -> range:
    """Line range of one Django split: 0-15999 / 16000-16999 / 17000-18804 on the real 18,805 lines.

    A file of any other length (a synthetic stand-in) is cut at the same fractions, 16000/18805 and
    17000/18805, rounded and kept non-empty for >= 3 lines, as `dllm_jepa_train.toy.synthetic` documents.
    """
    if num_lines == DJANGO_NUM_LINES:
        train_end, validation_end = DJANGO_TRAIN_END, DJANGO_VALIDATION_END
    else:
        train_end = round(num_lines * DJANGO_TRAIN_END / DJANGO_NUM_LINES)
        validation_end = round(num_lines * DJANGO_VALIDATION_END / DJANGO_NUM_LINES)
        if num_lines >= 3:
            train_end = min(max(train_end, 1), num_lines - 2)
            validation_end = min(max(validation_end, train_end + 1), num_lines - 1)
    return {
        "train": range(0, train_end),
        "validation": range(train_end, validation_end),
        "test": range(validation_end, num_lines),
    }[split]


def load(split: str, root: Path | None, options: Mapping[str, Any]) -> list[dict]:
    """{line, anno, code} docs of one split."""
    if root is None:
        return _hub_docs(split)
    folder = task_folder(NAME, root)
    annos = read_lines(require_file(folder / "all.anno", NAME))
    codes = read_lines(require_file(folder / "all.code", NAME))
    if len(annos) != len(codes):
        raise TaskDataError(f"{folder}: all.anno has {len(annos)} lines but all.code {len(codes)}")
    lines = django_split_range(split, len(codes))
    if len(lines) == 0:
        raise TaskDataError(f"django split {split!r} is empty: {folder} has only {len(codes)} lines")
    return [{"line": i, "anno": annos[i].strip(), "code": codes[i].strip()} for i in lines]


def _hub_docs(split: str) -> list[dict]:
    rows = load_hub(NAME, split)
    columns = list(rows[0]) if rows else []
    nl_col = next((c for c in _HUB_NL_COLUMNS if c in columns), None)
    code_col = next((c for c in _HUB_CODE_COLUMNS if c in columns), None)
    if nl_col is None or code_col is None:
        raise TaskDataError(
            f"hub dataset {HUB[0]} has columns {columns}; expected one of {_HUB_NL_COLUMNS} and one of "
            f"{_HUB_CODE_COLUMNS}. Use the local files instead: {DOWNLOAD_HINT}"
        )
    offset = {"train": 0, "validation": DJANGO_TRAIN_END, "test": DJANGO_VALIDATION_END}[split]
    return [
        {"line": offset + i, "anno": str(row[nl_col]).strip(), "code": str(row[code_col]).strip()}
        for i, row in enumerate(rows)
    ]


def text(doc: dict) -> str:
    """The pseudo-code prompt, ending at "Python:"."""
    return f"Pseudo-code: {doc['anno']}\nPython:"


def target(doc: dict) -> str:
    """The gold code line, space-tokenised as in the release."""
    return doc["code"]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """The paper's partition of the raw generation (Table 5): strict exact_match, ws_prefix_match,
    stop_artifact (= ws-prefix, not strict) and content_error (= not ws-prefix)."""
    return {name: float(value) for name, value in metric.outcome(results[0], doc["code"]).items()}


SPEC = TaskSpec(
    name=NAME,
    splits=("train", "validation", "test"),
    load=load,
    text=text,
    target=target,
    eval_tasks=("django_code", "django_code_0shot"),
    hub=HUB,
    download_hint=DOWNLOAD_HINT,
    metrics={"process_results": process_results},
)
