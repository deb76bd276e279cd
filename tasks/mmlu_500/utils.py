"""mmlu_500: lm-eval's hooks into the registered task `mmlu` (lm_eval_diffusion/task_defs/mmlu.py).

Data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (cais/mmlu, all).
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data

TASK = "mmlu"


def load_dataset(**metadata: Any):
    """MMLU-500 (8 or 9 questions per subject) as a DatasetDict (lm-eval passes the task metadata)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """Subject header, question and lettered choices, ending at "Answer:"."""
    return prompts.doc_to_text(TASK, doc)
