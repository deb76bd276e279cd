"""spider_exec: data, prompt and scoring hooks, and the task class that keeps offline shots off the doc.

Questions come from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (xlangai/spider); the databases from `spider_db_dir` (metadata key), else <data_dir>/spider/database.
See lm_eval_diffusion.task_data.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from lm_eval.api.task import ConfigurableTask

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.metrics import sql

log = logging.getLogger(__name__)

TASK = "spider"
EXEC_TIMEOUT_S = 10.0  # per query; a runaway prediction (cross joins) must not stall the run
EXEC_MAX_ROWS = 100_000  # rows a prediction may return; beyond this it scores 0 with exec_error set


class SpiderExecTask(ConfigurableTask):
    """The YAML task, except that without a train split the shots come from dev minus the doc itself.

    lm-eval removes the evaluated doc from the shots only when the few-shot split *is* the test
    split, so offline we point the few-shot split at dev instead of copying dev into `train`.
    """

    def __init__(self, config: dict | None = None, **kwargs: Any) -> None:
        config = {k: v for k, v in (config or {}).items() if k != "class"}
        super().__init__(config=config, **kwargs)

    def download(self, dataset_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().download(dataset_kwargs, **kwargs)
        if "train" not in self.dataset:
            log.warning(
                "spider_exec: no train_spider.json in the data directory; few-shot examples are drawn "
                "from dev (%s), excluding the evaluated question itself",
                self.config.test_split,
            )
            self.config.training_split = None
            self.config.fewshot_split = self.config.test_split
            self.fewshot_cfg.split = self.config.test_split


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """Schema and question, ending at "SQL:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold SQL query."""
    return prompts.doc_to_target(TASK, doc)


@functools.lru_cache(maxsize=256)
def _schema(db_path: str) -> dict[str, list[str]]:
    # exact_match resolves unqualified columns in joins through the schema; one read per database.
    return sql.read_schema(db_path)


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """exec_match (Table 2 / §4.1: the cleaned query; `sql.clean_sql`), exec_match_semicolon (A.9: cut at
    the first `;`; `sql.semicolon_sql`), exec_match_raw (the raw output, stripped), exact_match of the
    cleaned query, exact_match_raw (the raw output parsed as written), and exec_error (the cleaned query
    failed to run). Each distinct statement runs once, so a prediction costs at most three
    EXEC_TIMEOUT_S, and one when its cleanings give the same statement."""
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
