"""nlrx_synth: data, prompt and scoring hooks; all logic lives in lm_eval_diffusion.

NL-RX-SYNTH has no hub copy: data comes from `data_dir` (lm_eval --metadata '{"data_dir": ...}') or
$DLLM_JEPA_DATA, holding nlrx/synth_src.txt and nlrx/synth_targ.txt; see lm_eval_diffusion.task_data.
"""

from __future__ import annotations

from typing import Any

from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.metrics import regex

TASK = "nlrx"
FUNC_MATCH_STRINGS = 200  # the paper's count, for both functional metrics
FUNC_MATCH_TARGETED_SEED = 0


def load_dataset(**metadata: Any):
    """The task's splits as a DatasetDict (lm-eval passes the task metadata as keyword arguments)."""
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc: dict) -> str:
    """The description prompt, ending at "Regex:"."""
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc: dict) -> str:
    """The gold regex (dk.brics syntax)."""
    return prompts.doc_to_target(TASK, doc)


def clean_prediction(output: str) -> str:
    """The regex a generation proposes: its first line, stripped (a regex never spans lines)."""
    return output.strip().split("\n", 1)[0].strip()


def has_trailing_text(output: str) -> bool:
    """Whether the stripped output goes on after its first line."""
    return "\n" in output.strip()


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Scores of one generation (lm_eval_diffusion.metrics.regex documents each metric).

    On the first output line: exact_match, func_match (200 random strings, the paper's reading),
    func_match_targeted (200 difference-seeking strings), dfa_match, and stop_artifact (the first
    line is dfa-correct and more text follows it: a raw score would fail it). On the raw output:
    startswith_match (Table 14's lenient metric).
    """
    pred, gold = clean_prediction(results[0]), doc["regex"]
    is_dfa_match = regex.dfa_match(pred, gold)
    return {
        "exact_match": float(regex.exact_match(pred, gold)),
        "func_match": float(regex.func_match(pred, gold, num_strings=FUNC_MATCH_STRINGS)),
        "func_match_targeted": float(
            regex.func_match_targeted(
                pred, gold, num_strings=FUNC_MATCH_STRINGS, seed=FUNC_MATCH_TARGETED_SEED
            )
        ),
        "dfa_match": float(is_dfa_match),
        "startswith_match": float(regex.startswith_match(results[0], gold)),
        "stop_artifact": float(is_dfa_match and has_trailing_text(results[0])),
    }
