"""django_code: lm-eval's hooks into the registered task `django` (lm_eval_diffusion/task_defs/django.py).

Data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (AhmedSSoliman/DJANGO).
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.task_registry import get_task

TASK = "django"
# The paper's partition of the raw generation (Table 5): strict exact_match, ws_prefix_match,
# stop_artifact (= ws-prefix, not strict) and content_error (= not ws-prefix).
process_results = get_task(TASK).metrics["process_results"]


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """The pseudo-code prompt, ending at "Python:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold code line, space-tokenised as in the release."""
    return prompts.doc_to_target(TASK, doc)
