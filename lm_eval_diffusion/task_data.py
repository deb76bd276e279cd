"""Task data as uniform JSON-serialisable doc dicts, for every task in the registry.

One loader serves both the lm-eval tasks (`tasks/*/utils.py`) and the trainer, so training and
evaluation read the same examples. What a task's files are, its splits and its doc keys are its own
module's (`lm_eval_diffusion/task_defs/<task>.py`, registered in `lm_eval_diffusion.task_registry`);
this module checks a name and split against the registry, finds the data, and holds the file helpers
the task modules share. Data comes from a local directory in the layout of `shared/data` (see that
folder's README) when one is given, else from the Hugging Face hub:

    data_dir argument  >  $DLLM_JEPA_DATA  >  the hub        ("hub" as a value also means the hub)

task    local files under <data_dir>                      hub                   splits (sizes on the real data)
gsm8k   gsm8k/{train,test}.jsonl                          openai/gsm8k, main    train 7,473 / test 1,319
spider  spider/{train_spider,dev}.json, spider/database/  xlangai/spider (no    train 7,000 / validation = dev 1,034
          <db_id>/<db_id>.sqlite                            databases)            (972 with the shared databases)
nlrx    nlrx/synth_{src,targ}.txt                         none                  seeded 6,500 / 1,000 / 2,500
django  django/all.{anno,code}                            AhmedSSoliman/DJANGO  lines 0-15999 / 16000-16999 / rest
mmlu    mmlu/test/<subject>_test.csv, or mmlu/test.{jsonl,csv,parquet}   cais/mmlu, all   test 14,042 (MMLU-500)

Asking for a task or split the registry does not know raises, naming what it knows. Names of the
task modules' helpers that importers took from here before the registry (`nlrx_split_indices`,
`django_split_range`, `spider_schema`, `balanced_sample`, `TASKS`, `SPLITS`, ...) still resolve here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion import task_registry

DATA_ENV = "DLLM_JEPA_DATA"
HUB = "hub"


class TaskDataError(RuntimeError):
    """The data a task needs is not available where it was looked for; the message says how to get it."""


def resolve_data_dir(data_dir: str | Path | None = None) -> Path | None:
    """The local data directory: the argument, else $DLLM_JEPA_DATA, else None (= the hub)."""
    raw = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    if raw is None or str(raw) == HUB:
        return None
    path = Path(raw).expanduser()
    if not path.is_dir():
        source = "the data_dir argument" if data_dir not in (None, "") else f"${DATA_ENV}"
        raise TaskDataError(f"data directory {path} (from {source}) does not exist or is not a directory")
    return path


def load_docs(
    task: str,
    split: str,
    data_dir: str | Path | None = None,
    spider_db_dir: str | Path | None = None,
    **options: Any,
) -> list[dict]:
    """Docs of one task split; `options` (and `spider_db_dir`) are the task's own data options."""
    spec = task_registry.get_task(task)
    if split not in spec.splits:
        raise ValueError(f"task {task!r} has no split {split!r}; its splits are {spec.splits}")
    root = resolve_data_dir(data_dir)
    docs = spec.load(split, root, {"spider_db_dir": spider_db_dir, **options})
    if not docs:
        raise TaskDataError(f"{task} split {split!r} is empty (data from {root or 'the hub'})")
    return docs


def task_folder(task: str, root: Path) -> Path:
    """<root>/<task>, or one clear error naming what to download and where to put it."""
    folder = root / task
    if not folder.is_dir():
        spec = task_registry.get_task(task)
        alternative = (
            f"or load the hub copy by giving no data_dir (unset ${DATA_ENV}, or pass data_dir='{HUB}')"
            if spec.hub else f"{spec.name} has no Hugging Face hub copy"
        )
        raise TaskDataError(
            f"{task} data not found: {folder} does not exist. Download {spec.download_hint}; {alternative}"
        )
    return folder


def require_file(path: Path, task: str) -> Path:
    """`path`, or one clear error naming the task's download."""
    if not path.is_file():
        raise TaskDataError(f"{task} data not found: missing {path}. Download "
                            f"{task_registry.get_task(task).download_hint}")
    return path


def load_hub(task: str, split: str) -> list[dict]:
    """Rows of one hub split via `datasets.load_dataset`, or one clear error (offline, missing, renamed)."""
    spec = task_registry.get_task(task)
    if spec.hub is None:
        raise TaskDataError(f"{task} has no Hugging Face hub copy: download {spec.download_hint}")
    path, name = spec.hub
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # any failure here means "could not get the data"; the cause is chained
        config = f" (config {name})" if name else ""
        raise TaskDataError(
            f"could not load {task} split {split!r} from the Hugging Face hub dataset {path}{config}: "
            f"{type(err).__name__}: {err}. Without network access, download {spec.download_hint} "
            f"and point ${DATA_ENV} (or lm_eval --metadata '{{\"data_dir\": ...}}') at that folder."
        ) from err
    return [dict(row) for row in rows]


def read_lines(path: Path) -> list[str]:
    """Lines of a text file split on '\\n' only (str.splitlines would also split on \\x0b, \\x1c, ...)."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def read_jsonl(path: Path) -> list[dict]:
    """One JSON object per non-blank line."""
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# ------------------------------------------------------------------------------- lm-eval datasets


def lm_eval_splits(
    task: str, data_dir: str | Path | None = None, spider_db_dir: str | Path | None = None, **options: Any
) -> dict[str, list[dict]]:
    """The splits an lm-eval task reads: the task's own choice (`TaskSpec.lm_eval_splits`: Spider's train
    only where present, MMLU's 500-question subset), else every split of `task`."""
    spec = task_registry.get_task(task)
    options = {"spider_db_dir": spider_db_dir, **options}
    if spec.lm_eval_splits is not None:
        return spec.lm_eval_splits(data_dir, options)
    return {split: load_docs(task, split, data_dir, **options) for split in spec.splits}


def lm_eval_dataset(task: str, metadata: Mapping[str, Any]):
    """`lm_eval_splits` as a `datasets.DatasetDict`, reading `data_dir` and the task's options from metadata.

    lm-eval calls a task's `custom_dataset` with all of its metadata: the YAML's, `--metadata`, and
    (from `simple_evaluate`) the model_args, so keys other than `data_dir` and the task's own data
    options (Spider: `spider_db_dir`) are expected and ignored.
    """
    import datasets

    spec = task_registry.get_task(task)
    options = {o.key: metadata.get(o.key) for o in spec.data_options}
    splits = lm_eval_splits(task, metadata.get("data_dir"), **options)
    return datasets.DatasetDict({name: datasets.Dataset.from_list(docs) for name, docs in splits.items()})


# Names importers took from this module before the registry: the built-in task modules' helpers, and
# tables now read from the registry (snapshots of what is registered when they are asked for).
_MOVED = {
    "nlrx": ("NLRX_SPLIT_SEED", "NLRX_SPLIT_FRACTIONS", "nlrx_split_indices"),
    "django": ("DJANGO_NUM_LINES", "DJANGO_TRAIN_END", "DJANGO_VALIDATION_END", "django_split_range"),
    "spider": ("SPIDER_RELEASE", "spider_schema", "spider_db_path", "resolve_spider_db_dir"),
    "mmlu": ("MMLU_SUBSET_SIZE", "MMLU_SUBSET_SEED", "MMLU_NUM_SUBJECTS", "MMLU_LOCAL_FILES", "MMLU_RELEASE_DIR",
             "MMLU_COLUMNS", "balanced_sample", "load_mmlu_subset"),
}
_TABLES = {
    "TASKS": lambda: task_registry.task_names(training_only=True),  # the data.source tasks (gsm8k ... django)
    "ALL_TASKS": lambda: task_registry.task_names(),
    "SPLITS": lambda: {name: task_registry.get_task(name).splits for name in task_registry.task_names()},
    "HUB_DATASETS": lambda: {name: task_registry.get_task(name).hub for name in task_registry.task_names()
                             if task_registry.get_task(name).hub},
}


def __getattr__(name: str) -> Any:
    if name in _TABLES:
        return _TABLES[name]()
    for module, names in _MOVED.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(f"lm_eval_diffusion.task_defs.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
