"""spider_exec: lm-eval's hooks into the registered task `spider` (lm_eval_diffusion/task_defs/spider.py),
and the task class that keeps offline shots off the doc.

Questions come from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (xlangai/spider); the databases from `spider_db_dir` (metadata key), else <data_dir>/spider/database.
"""

from __future__ import annotations

import logging
from typing import Any

from lm_eval.api.task import ConfigurableTask

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.task_registry import get_task

log = logging.getLogger(__name__)

TASK = "spider"
# exec_match (cleaned), exec_match_semicolon, exec_match_raw, exact_match, exact_match_raw, exec_error;
# each distinct statement runs once, under the task module's EXEC_TIMEOUT_S and EXEC_MAX_ROWS.
process_results = get_task(TASK).metrics["process_results"]


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
