"""Spider 1.0: a question and a database schema -> SQL, scored by execution on the sqlite database and
by exact match (lm_eval_diffusion.metrics.sql).

Data: <data_dir>/spider/{train_spider,dev}.json and the databases <db_dir>/<db_id>/<db_id>.sqlite, the
database folder being `spider_db_dir` (its own option: data.spider_db_dir, lm-eval metadata key
spider_db_dir), else <data_dir>/spider/database. The hub's xlangai/spider has the questions but no
databases. No public test split: evaluation is on dev (`validation`), as in the paper; train 7,000 /
validation 1,034 (972 with the shared databases). Docs {db_id, db_path, schema, question, query}.
Prompt: "Database: {db_id}\\n{schema}\\nQuestion: {question}\\nSQL:" -> " {query}".
"""

from __future__ import annotations

import functools
import json
import logging
import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion.task_data import TaskDataError, load_hub, require_file, resolve_data_dir, task_folder
from lm_eval_diffusion.task_registry import DataOption, TaskSpec

log = logging.getLogger(__name__)

NAME = "spider"
SPIDER_RELEASE = "https://yale-lily.github.io/spider (spider_data.zip)"
DOWNLOAD_HINT = (f"the Spider 1.0 release, {SPIDER_RELEASE}: dev.json, train_spider.json and database/ "
                 "into <data_dir>/spider/")
EXEC_TIMEOUT_S = 10.0  # per query; a runaway prediction (cross joins) must not stall the run
EXEC_MAX_ROWS = 100_000  # rows a prediction may return; beyond this it scores 0 with exec_error set


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


def load(split: str, root: Path | None, options: Mapping[str, Any]) -> list[dict]:
    """Docs of one split whose database is present (the others are skipped, with a warning naming them)."""
    db_dir = resolve_spider_db_dir(root, options.get("spider_db_dir"))
    if root is None:
        rows = load_hub(NAME, split)
    else:
        file_name = {"train": "train_spider.json", "validation": "dev.json"}[split]
        path = require_file(task_folder(NAME, root) / file_name, NAME)
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


def lm_eval_splits(data_dir: Any, options: Mapping[str, Any]) -> dict[str, list[dict]]:
    """validation, and train (the few-shot pool) unless a local data_dir has no train_spider.json (the
    shared offline copy); the task then draws shots from dev, never the doc (tasks/spider_exec/utils.py)."""
    root = resolve_data_dir(data_dir)
    splits = {"validation": load("validation", root, options)}
    if root is None or (root / "spider" / "train_spider.json").is_file():
        splits["train"] = load("train", root, options)
    return splits


def text(doc: dict) -> str:
    """Schema and question, ending at "SQL:"."""
    return f"Database: {doc['db_id']}\n{doc['schema']}\nQuestion: {doc['question']}\nSQL:"


def target(doc: dict) -> str:
    """The gold SQL query."""
    return doc["query"]


@functools.lru_cache(maxsize=256)
def _schema(db_path: str) -> dict[str, list[str]]:
    # exact_match resolves unqualified columns in joins through the schema; one read per database.
    from lm_eval_diffusion.metrics import sql

    return sql.read_schema(db_path)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """exec_match (Table 2 / §4.1: the cleaned query; `sql.clean_sql`), exec_match_semicolon (A.9: cut at
    the first `;`; `sql.semicolon_sql`), exec_match_raw (the raw output, stripped), exact_match of the
    cleaned query, exact_match_raw (the raw output parsed as written), and exec_error (the cleaned query
    failed to run). Each distinct statement runs once, so a prediction costs at most three
    EXEC_TIMEOUT_S, and one when its cleanings give the same statement."""
    from lm_eval_diffusion.metrics import sql  # sqlglot: only when scoring

    raw, gold, db_path = results[0], doc["query"], doc["db_path"]
    limits = {"timeout_s": EXEC_TIMEOUT_S, "max_rows": EXEC_MAX_ROWS}
    executed = sql.exec_match_all(raw, gold, db_path, ("clean", "semicolon", "raw"), **limits)
    schema = _schema(db_path)
    return {
        "exec_match": float(executed["clean"].match),
        "exec_match_semicolon": float(executed["semicolon"].match),
        "exec_match_raw": float(executed["raw"].match),
        "exact_match": float(sql.exact_match(raw, gold, schema)),
        "exact_match_raw": float(sql.exact_match(raw, gold, schema, clean=False)),
        "exec_error": float(executed["clean"].error is not None),
    }


SPEC = TaskSpec(
    name=NAME,
    splits=("train", "validation"),
    load=load,
    text=text,
    target=target,
    eval_tasks=("spider_exec", "spider_exec_0shot"),
    hub=("xlangai/spider", None),
    download_hint=DOWNLOAD_HINT,
    metrics={"process_results": process_results},
    # spider_db_dir: the sqlite folder; "" = <data_dir>/spider/database (checked when the data loads)
    data_options=(DataOption("spider_db_dir", default=""),),
    lm_eval_splits=lm_eval_splits,
)
