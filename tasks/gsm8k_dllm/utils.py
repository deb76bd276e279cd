"""gsm8k_dllm: lm-eval's hooks into the registered task `gsm8k` (lm_eval_diffusion/task_defs/gsm8k.py).

Data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (openai/gsm8k, main).
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.task_registry import get_task

TASK = "gsm8k"
_METRICS = get_task(TASK).metrics
strict_filter = _METRICS["strict_filter"]  # each response reduced to its strict (`#### N`) answer
flexible_filter = _METRICS["flexible_filter"]  # each response reduced to its last number
process_results = _METRICS["process_results"]  # exact_match of the extracted answer against the gold number


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """The question prompt, ending at "Answer:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold chain of thought ending in "#### N"."""
    return prompts.doc_to_target(TASK, doc)
