"""gsm8k_dllm: data, prompt and scoring hooks; all logic lives in lm_eval_diffusion.

Data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}'), else $DLLM_JEPA_DATA, else the
hub (openai/gsm8k, main); see lm_eval_diffusion.task_data.
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.metrics import gsm8k

TASK = "gsm8k"


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """The question prompt, ending at "Answer:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold chain of thought ending in "#### N"."""
    return prompts.doc_to_target(TASK, doc)


def strict_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Each response reduced to its strict (`#### N`) answer, normalised."""
    return [[gsm8k.extract_strict(r) for r in doc_resps] for doc_resps in resps]


def flexible_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Each response reduced to its last number, normalised."""
    return [[gsm8k.extract_flexible(r) for r in doc_resps] for doc_resps in resps]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """exact_match of the (already extracted) answer against the gold final number."""
    return {"exact_match": float(gsm8k.is_correct(results[0], doc["answer"]))}
