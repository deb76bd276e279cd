"""GSM8K answer extraction and scoring, matching lm-eval's `gsm8k` task (strict and flexible filters).

strict    the first `#### N` in the output (the format the few-shot answers teach)
flexible  the last number-like run in the output, wherever it is
Both sides are then normalised as lm-eval's `exact_match` with the gsm8k task's `regexes_to_ignore`:
commas and `$` removed, one trailing `.` removed, case-folded. No numeric parsing: "18.00" != "18",
exactly as in lm-eval, so scores are comparable with reported ones. Only ASCII digits count.
A missing output (None) is scored as no answer; a missing gold is a data error and raises.
"""

from __future__ import annotations

import re

INVALID = "[invalid]"  # what lm-eval's regex filter returns when nothing matches
STRICT_PATTERN = re.compile(r"#### (\-?[0-9\.\,]+)")
FLEXIBLE_PATTERN = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_GOLD_MARKER = "#### "


def normalise_number(text: str) -> str:
    """lm-eval's gsm8k normalisation: drop ',' and '$', drop one trailing '.', strip, lower-case."""
    text = text.replace(",", "").replace("$", "")
    text = re.sub(r"\.$", "", text.strip())
    return text.strip().lower()


def extract_strict(output: str | None) -> str:
    """The number after the first `#### `, normalised; INVALID when absent."""
    if output is None:
        return INVALID
    found = STRICT_PATTERN.search(output)
    return normalise_number(found.group(1)) if found else INVALID


def extract_flexible(output: str | None) -> str:
    """The last number-like run (`(-?[$0-9.,]{2,})|(-?[0-9]+)`), normalised; INVALID when absent."""
    if output is None:
        return INVALID
    last = None
    for last in FLEXIBLE_PATTERN.finditer(output):
        pass
    if last is None:
        return INVALID
    return normalise_number(last.group(1) or last.group(2))


def gold_number(gold_answer: str) -> str:
    """The normalised gold number: text after the last `#### ` (the whole string when there is none)."""
    if not isinstance(gold_answer, str):
        raise TypeError(f"gold answer must be a string, got {type(gold_answer).__name__}")
    return normalise_number(gold_answer.rsplit(_GOLD_MARKER, 1)[-1])


def is_correct(extracted: str, gold_answer: str) -> bool:
    """Whether an extracted (already normalised) prediction equals the gold number."""
    gold = gold_number(gold_answer)
    return extracted != INVALID and gold != "" and extracted == gold


def score(pred: str | None, gold_answer: str) -> dict[str, bool]:
    """{"strict": .., "flexible": ..}: whether each extraction of `pred` equals the gold number."""
    return {
        "strict": is_correct(extract_strict(pred), gold_answer),
        "flexible": is_correct(extract_flexible(pred), gold_answer),
    }
