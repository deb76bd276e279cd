"""GSM8K: grade-school maths word problems, scored on the final number.

Data: <data_dir>/gsm8k/{train,test}.jsonl ({"question", "answer"}, the answer a chain of thought ending
in "#### N"), else the hub's openai/gsm8k (main); train 7,473 / test 1,319, no validation split.
Prompt (lm-eval's own `gsm8k` format, so scores stay comparable): "Question: {question}\\nAnswer:" ->
" {answer}". Its own data option: `data.dev_rows` holds out a seeded slice of train as a dev split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from lm_eval_diffusion.metrics import gsm8k as metric
from lm_eval_diffusion.task_data import load_hub, read_jsonl, require_file, task_folder
from lm_eval_diffusion.task_registry import DataOption, TaskSpec

NAME = "gsm8k"
DOWNLOAD_HINT = "openai/grade-school-math: grade_school_math/data/{train,test}.jsonl into <data_dir>/gsm8k/"


def load(split: str, root: Path | None, options: Mapping[str, Any]) -> list[dict]:
    """{question, answer} docs of one split."""
    rows = load_hub(NAME, split) if root is None else read_jsonl(
        require_file(task_folder(NAME, root) / f"{split}.jsonl", NAME))
    return [{"question": row["question"], "answer": row["answer"]} for row in rows]


def text(doc: dict) -> str:
    """The question prompt, ending at "Answer:"."""
    return f"Question: {doc['question']}\nAnswer:"


def target(doc: dict) -> str:
    """The gold chain of thought ending in "#### N"."""
    return doc["answer"]


def strict_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Each response reduced to its strict (`#### N`) answer, normalised."""
    return [[metric.extract_strict(r) for r in doc_resps] for doc_resps in resps]


def flexible_filter(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Each response reduced to its last number, normalised."""
    return [[metric.extract_flexible(r) for r in doc_resps] for doc_resps in resps]


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """exact_match of the (already extracted) answer against the gold final number."""
    return {"exact_match": float(metric.is_correct(results[0], doc["answer"]))}


def _check_dev_rows(value: Any, split: str) -> None:
    if split != "train":
        raise ValueError("only for split train (the other tasks have a validation split to select on)")


SPEC = TaskSpec(
    name=NAME,
    splits=("train", "test"),
    load=load,
    text=text,
    target=target,
    eval_tasks=("gsm8k_dllm", "gsm8k_dllm_0shot"),
    hub=("openai/gsm8k", "main"),
    download_hint=DOWNLOAD_HINT,
    metrics={"process_results": process_results, "strict_filter": strict_filter, "flexible_filter": flexible_filter},
    # dev_rows: a seeded slice of train held out of training and written as <output_dir>/dev_data/gsm8k/test.jsonl
    data_options=(DataOption("dev_rows", _check_dev_rows, default=0),),
)
