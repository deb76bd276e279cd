"""Task data for the four generation tasks and the MMLU subset, as uniform JSON-serialisable doc dicts.

One loader serves both the lm-eval tasks (`tasks/*/utils.py`) and the trainer, so training and
evaluation read the same examples. Data comes from a local directory in the layout of
`shared/data` (see that folder's README) when one is given, else from the Hugging Face hub:

    data_dir argument  >  $DLLM_JEPA_DATA  >  the hub        ("hub" as a value also means the hub)

task    local files under <data_dir>                      hub                   splits (sizes on the real data)
gsm8k   gsm8k/{train,test}.jsonl                          openai/gsm8k, main    train 7,473 / test 1,319
spider  spider/{train_spider,dev}.json, spider/database/  xlangai/spider (no    train 7,000 / validation = dev 1,034
          <db_id>/<db_id>.sqlite                            databases)            (972 with the shared databases)
nlrx    nlrx/synth_{src,targ}.txt                         none                  seeded 6,500 / 1,000 / 2,500
django  django/all.{anno,code}                            AhmedSSoliman/DJANGO  lines 0-15999 / 16000-16999 / rest*
mmlu    mmlu/test/<subject>_test.csv (the release's       cais/mmlu, all        test 14,042 (then MMLU-500:
          data/test), or mmlu/test.{jsonl,csv,parquet}                          8 or 9 per subject)
* by line order; a file that is not 18,805 lines long (a synthetic stand-in) is cut at the same fractions.

Doc keys per task (what `prompts.py` and `process_results` read):
    gsm8k  {question, answer}                      answer = chain of thought ending in "#### N"
    spider {db_id, db_path, schema, question, query}
    nlrx   {line, description, regex}              line = 0-based line number in the release files
    django {line, anno, code}                      code without its (meaningless) leading indentation
    mmlu   {question, subject, choices, answer}    choices: 4 strings, answer: index 0-3

Spider has no public test split in the 1.0 release, so its evaluation set is dev (`validation`),
as in the paper; GSM8K has no validation split. Asking for a split a task does not have raises.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import random
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

log = logging.getLogger(__name__)

TASKS = ("gsm8k", "spider", "nlrx", "django")  # generation tasks; MMLU is the separate sanity check
ALL_TASKS = TASKS + ("mmlu",)
SPLITS: dict[str, tuple[str, ...]] = {
    "gsm8k": ("train", "test"),
    "spider": ("train", "validation"),
    "nlrx": ("train", "validation", "test"),
    "django": ("train", "validation", "test"),
    "mmlu": ("test",),
}

DATA_ENV = "DLLM_JEPA_DATA"
HUB = "hub"
HUB_DATASETS: dict[str, tuple[str, str | None]] = {
    "gsm8k": ("openai/gsm8k", "main"),
    "spider": ("xlangai/spider", None),
    "django": ("AhmedSSoliman/DJANGO", None),
    "mmlu": ("cais/mmlu", "all"),
}

# NL-RX-SYNTH ships as 10,000 unsplit pairs; the original tokenised 6,500/1,000/2,500 split is not
# part of the release, so we shuffle the line indices with this seed (Python's `random.Random`,
# whose shuffle is stable across CPython versions) and cut 65% / 10% / rest.
NLRX_SPLIT_SEED = 20240601
NLRX_SPLIT_FRACTIONS = (0.65, 0.10)  # train, validation; test is the remainder

# The standard Django split (Oda et al., 2015) is by line order over the release's 18,805 lines.
DJANGO_NUM_LINES = 18805
DJANGO_TRAIN_END = 16000
DJANGO_VALIDATION_END = 17000

# MMLU-500 (paper: "approximately 8-9 questions per subject across all 57 subjects, fixed seed"):
# 500 = 44 x 9 + 13 x 8; which 44 subjects get the ninth question, and the questions within each
# subject, are drawn with this seed (see `balanced_sample`).
MMLU_SUBSET_SIZE = 500
MMLU_SUBSET_SEED = 1234
MMLU_NUM_SUBJECTS = 57
MMLU_LOCAL_FILES = ("test.jsonl", "test.csv", "test.parquet")
MMLU_RELEASE_DIR = "test"  # the original release (hendrycks/test, data.tar): test/<subject>_test.csv, no header
MMLU_COLUMNS = ("question", "subject", "choices", "answer")

# Column names the hub copy of Django might use; the loader names what it found if none fit.
_DJANGO_HUB_NL_COLUMNS = ("nl", "anno", "intent", "text", "input")
_DJANGO_HUB_CODE_COLUMNS = ("code", "snippet", "output")

SPIDER_RELEASE = "https://yale-lily.github.io/spider (spider_data.zip)"
_DOWNLOAD_HINTS = {
    "gsm8k": "openai/grade-school-math: grade_school_math/data/{train,test}.jsonl into <data_dir>/gsm8k/",
    "spider": f"the Spider 1.0 release, {SPIDER_RELEASE}: dev.json, train_spider.json and database/ "
    "into <data_dir>/spider/",
    "nlrx": "nicholaslocascio/deep-regex: datasets/NL-RX-Synth/src.txt and targ.txt, saved as "
    "<data_dir>/nlrx/synth_src.txt and <data_dir>/nlrx/synth_targ.txt",
    "django": "odashi/ase15-django-dataset: django/all.anno and django/all.code into <data_dir>/django/",
    "mmlu": "the MMLU release (hendrycks/test, data.tar) with its data/test/<subject>_test.csv files as "
    "<data_dir>/mmlu/test/, or cais/mmlu (config all, split test) saved as <data_dir>/mmlu/test.jsonl with "
    "columns question, subject, choices (list of 4), answer (index 0-3)",
}


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
) -> list[dict]:
    """Docs of one task split (see the module docstring for keys, sources and splits)."""
    if task not in ALL_TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {ALL_TASKS}")
    if split not in SPLITS[task]:
        raise ValueError(f"task {task!r} has no split {split!r}; its splits are {SPLITS[task]}")
    root = resolve_data_dir(data_dir)
    if task == "spider":
        return _spider_docs(split, root, spider_db_dir)
    loader: Callable[[str, Path | None], list[dict]] = {
        "gsm8k": _gsm8k_docs,
        "nlrx": _nlrx_docs,
        "django": _django_docs,
        "mmlu": _mmlu_docs,
    }[task]
    docs = loader(split, root)
    if not docs:
        raise TaskDataError(f"{task} split {split!r} is empty (data from {root or 'the hub'})")
    return docs


def task_folder(task: str, root: Path) -> Path:
    """<root>/<task>, or one clear error naming what to download and where to put it."""
    folder = root / task
    if not folder.is_dir():
        alternative = (
            "NL-RX has no Hugging Face hub copy"
            if task == "nlrx"
            else f"or load the hub copy by giving no data_dir (unset ${DATA_ENV}, or pass data_dir='{HUB}')"
        )
        raise TaskDataError(
            f"{task} data not found: {folder} does not exist. Download {_DOWNLOAD_HINTS[task]}; {alternative}"
        )
    return folder


def _require_file(path: Path, task: str) -> Path:
    if not path.is_file():
        raise TaskDataError(f"{task} data not found: missing {path}. Download {_DOWNLOAD_HINTS[task]}")
    return path


def _load_hub(task: str, split: str) -> list[dict]:
    """Rows of one hub split via `datasets.load_dataset`, or one clear error (offline, missing, renamed)."""
    path, name = HUB_DATASETS[task]
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # any failure here means "could not get the data"; the cause is chained
        config = f" (config {name})" if name else ""
        raise TaskDataError(
            f"could not load {task} split {split!r} from the Hugging Face hub dataset {path}{config}: "
            f"{type(err).__name__}: {err}. Without network access, download {_DOWNLOAD_HINTS[task]} "
            f"and point ${DATA_ENV} (or lm_eval --metadata '{{\"data_dir\": ...}}') at that folder."
        ) from err
    return [dict(row) for row in rows]


def _read_lines(path: Path) -> list[str]:
    """Lines of a text file split on '\\n' only (str.splitlines would also split on \\x0b, \\x1c, ...)."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def _read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


# ----------------------------------------------------------------------------------------- gsm8k


def _gsm8k_docs(split: str, root: Path | None) -> list[dict]:
    rows = (
        _load_hub("gsm8k", split)
        if root is None
        else _read_jsonl(_require_file(task_folder("gsm8k", root) / f"{split}.jsonl", "gsm8k"))
    )
    return [{"question": row["question"], "answer": row["answer"]} for row in rows]


# ----------------------------------------------------------------------------------------- nl-rx


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


def _nlrx_docs(split: str, root: Path | None) -> list[dict]:
    if root is None:
        raise TaskDataError(
            "NL-RX-SYNTH has no Hugging Face hub copy: download "
            f"{_DOWNLOAD_HINTS['nlrx']} and set ${DATA_ENV} (or --metadata data_dir) to <data_dir>"
        )
    folder = task_folder("nlrx", root)
    sources = _read_lines(_require_file(folder / "synth_src.txt", "nlrx"))
    targets = _read_lines(_require_file(folder / "synth_targ.txt", "nlrx"))
    if len(sources) != len(targets):
        raise TaskDataError(f"{folder}: synth_src.txt has {len(sources)} lines but synth_targ.txt {len(targets)}")
    return [
        {"line": i, "description": sources[i].strip(), "regex": targets[i].strip()}
        for i in nlrx_split_indices(len(sources))[split]
    ]


# ---------------------------------------------------------------------------------------- django


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


def _django_docs(split: str, root: Path | None) -> list[dict]:
    if root is None:
        return _django_hub_docs(split)
    folder = task_folder("django", root)
    annos = _read_lines(_require_file(folder / "all.anno", "django"))
    codes = _read_lines(_require_file(folder / "all.code", "django"))
    if len(annos) != len(codes):
        raise TaskDataError(f"{folder}: all.anno has {len(annos)} lines but all.code {len(codes)}")
    lines = django_split_range(split, len(codes))
    if len(lines) == 0:
        raise TaskDataError(f"django split {split!r} is empty: {folder} has only {len(codes)} lines")
    return [{"line": i, "anno": annos[i].strip(), "code": codes[i].strip()} for i in lines]


def _django_hub_docs(split: str) -> list[dict]:
    rows = _load_hub("django", split)
    columns = list(rows[0]) if rows else []
    nl_col = next((c for c in _DJANGO_HUB_NL_COLUMNS if c in columns), None)
    code_col = next((c for c in _DJANGO_HUB_CODE_COLUMNS if c in columns), None)
    if nl_col is None or code_col is None:
        raise TaskDataError(
            f"hub dataset {HUB_DATASETS['django'][0]} has columns {columns}; expected one of "
            f"{_DJANGO_HUB_NL_COLUMNS} and one of {_DJANGO_HUB_CODE_COLUMNS}. Use the local files instead: "
            f"{_DOWNLOAD_HINTS['django']}"
        )
    offset = {"train": 0, "validation": DJANGO_TRAIN_END, "test": DJANGO_VALIDATION_END}[split]
    return [
        {"line": offset + i, "anno": str(row[nl_col]).strip(), "code": str(row[code_col]).strip()}
        for i, row in enumerate(rows)
    ]


# ---------------------------------------------------------------------------------------- spider


def _quote_identifier(name: str) -> str:
    """A SQL identifier as the model should write it: bare when simple, else double-quoted."""
    if name and name.isascii() and name.replace("_", "a").isalnum() and not name[0].isdigit():
        return name
    return '"' + name.replace('"', '""') + '"'


@functools.lru_cache(maxsize=512)
def spider_schema(db_path: str) -> str:
    """Compact schema text read from a sqlite file: one `table(col, col, ...)` line per table."""
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
            )
        ]
        lines = []
        for table in tables:
            escaped = table.replace('"', '""')
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{escaped}")')]
            lines.append(f"{_quote_identifier(table)}({', '.join(_quote_identifier(c) for c in columns)})")
    finally:
        conn.close()
    return "\n".join(lines)


def spider_db_path(db_dir: Path, db_id: str) -> Path:
    """Where the Spider release keeps one database: <db_dir>/<db_id>/<db_id>.sqlite."""
    return db_dir / db_id / f"{db_id}.sqlite"


def resolve_spider_db_dir(root: Path | None, spider_db_dir: str | Path | None = None) -> Path:
    """The Spider database folder: the explicit argument, else <data_dir>/spider/database."""
    if spider_db_dir not in (None, ""):
        db_dir = Path(spider_db_dir).expanduser()
    elif root is not None:
        db_dir = root / "spider" / "database"
    else:
        raise TaskDataError(
            "the Spider databases are not on the Hugging Face hub: download "
            f"{SPIDER_RELEASE} and pass its database/ folder as spider_db_dir "
            "(lm_eval --metadata '{\"spider_db_dir\": ...}'), or set a data_dir that holds spider/database/"
        )
    if not db_dir.is_dir():
        raise TaskDataError(f"Spider database folder {db_dir} does not exist. Download {SPIDER_RELEASE}")
    return db_dir


def _spider_docs(split: str, root: Path | None, spider_db_dir: str | Path | None) -> list[dict]:
    db_dir = resolve_spider_db_dir(root, spider_db_dir)
    if root is None:
        rows = _load_hub("spider", split)
    else:
        file_name = {"train": "train_spider.json", "validation": "dev.json"}[split]
        path = _require_file(task_folder("spider", root) / file_name, "spider")
        rows = json.loads(path.read_text(encoding="utf-8"))
    docs, missing = [], defaultdict(int)
    for row in rows:
        db_path = spider_db_path(db_dir, row["db_id"])
        if not db_path.is_file():
            missing[row["db_id"]] += 1
            continue
        docs.append(
            {
                "db_id": row["db_id"],
                "db_path": str(db_path.resolve()),
                "schema": spider_schema(str(db_path.resolve())),
                "question": row["question"].strip(),
                "query": row["query"].strip(),
            }
        )
    if missing:
        log.warning(
            "spider %s: skipped %d of %d questions whose database is missing under %s: %s",
            split, sum(missing.values()), len(rows), db_dir, dict(sorted(missing.items())),
        )
    if not docs:
        raise TaskDataError(
            f"spider {split}: none of the {len(rows)} questions has its database under {db_dir}. "
            f"Download {SPIDER_RELEASE}"
        )
    return docs


# ------------------------------------------------------------------------------------------ mmlu


def _mmlu_docs(split: str, root: Path | None) -> list[dict]:
    rows = _load_hub("mmlu", split) if root is None else _mmlu_local_rows(task_folder("mmlu", root))
    return [_mmlu_doc(row, i) for i, row in enumerate(rows)]


def _mmlu_local_rows(folder: Path) -> list[dict]:
    present = [folder / name for name in MMLU_LOCAL_FILES if (folder / name).is_file()]
    release = folder / MMLU_RELEASE_DIR
    if release.is_dir():
        present.append(release)
    if len(present) != 1:
        found = "none" if not present else ", ".join(p.name for p in present)
        raise TaskDataError(
            f"{folder} must hold exactly one of {MMLU_LOCAL_FILES + (MMLU_RELEASE_DIR + '/',)} (found {found}); "
            f"see {_DOWNLOAD_HINTS['mmlu']}"
        )
    path = present[0]
    if path == release:
        return _mmlu_release_rows(release)
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
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


def _mmlu_release_rows(folder: Path) -> list[dict]:
    """Rows of the original release's test/<subject>_test.csv files (no header: question, A, B, C, D,
    answer letter), subjects in name order as in the hub's `all` config."""
    files = sorted(folder.glob("*_test.csv"))
    if not files:
        raise TaskDataError(f"{folder} has no <subject>_test.csv files; see {_DOWNLOAD_HINTS['mmlu']}")
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


def _mmlu_doc(row: dict[str, Any], index: int) -> dict:
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
    docs = load_docs("mmlu", "test", data_dir)
    num_subjects = len({doc["subject"] for doc in docs})
    if num_subjects != MMLU_NUM_SUBJECTS:
        log.warning("MMLU test data has %d subjects, not %d: MMLU-500 spreads %d questions over those",
                    num_subjects, MMLU_NUM_SUBJECTS, num_docs)
    return balanced_sample(docs, num_docs, seed)


# ------------------------------------------------------------------------------- lm-eval datasets


def lm_eval_splits(
    task: str, data_dir: str | Path | None = None, spider_db_dir: str | Path | None = None
) -> dict[str, list[dict]]:
    """The splits an lm-eval task reads: every split of `task`; for MMLU the MMLU-500 test subset.

    Spider's `train` (the few-shot pool) is left out only when a local data_dir has no
    train_spider.json (the shared offline copy); the task then draws shots from dev, never the doc.
    """
    if task == "mmlu":
        return {"test": load_mmlu_subset(data_dir)}
    if task == "spider":
        root = resolve_data_dir(data_dir)
        splits = {"validation": load_docs("spider", "validation", root, spider_db_dir)}
        if root is None or (root / "spider" / "train_spider.json").is_file():
            splits["train"] = load_docs("spider", "train", root, spider_db_dir)
        return splits
    return {split: load_docs(task, split, data_dir) for split in SPLITS[task]}


def lm_eval_dataset(task: str, metadata: dict[str, Any]):
    """`lm_eval_splits` as a `datasets.DatasetDict`, reading `data_dir` / `spider_db_dir` from task metadata.

    lm-eval calls a task's `custom_dataset` with all of its metadata: the YAML's, `--metadata`, and
    (from `simple_evaluate`) the model_args, so keys other than these two are expected and ignored.
    """
    import datasets

    splits = lm_eval_splits(task, metadata.get("data_dir"), metadata.get("spider_db_dir"))
    return datasets.DatasetDict({name: datasets.Dataset.from_list(docs) for name, docs in splits.items()})
