"""nlrx_synth: lm-eval's hooks into the registered task `nlrx` (lm_eval_diffusion/task_defs/nlrx.py,
which documents the metrics and cleaning).

NL-RX-SYNTH has no hub copy: data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}') or
$DLLM_JEPA_DATA, holding nlrx/synth_src.txt and nlrx/synth_targ.txt.
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.task_registry import get_task

TASK = "nlrx"
# exact_match, func_match, func_match_targeted, dfa_match and stop_artifact on the first output line;
# startswith_match on the raw output.
process_results = get_task(TASK).metrics["process_results"]


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """The description prompt, ending at "Regex:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold regex (dk.brics syntax)."""
    return prompts.doc_to_target(TASK, doc)
