"""The one definition of each task's prompt text, shared by the lm-eval tasks and the trainer.

An lm-eval k-shot prompt is k times `text + TARGET_DELIMITER + target + FEWSHOT_DELIMITER`, then the
doc's `text`; the model continues with `TARGET_DELIMITER + target`. Fine-tuning uses exactly the
zero-shot form of that: `training_pair` returns (`text`, `TARGET_DELIMITER + target`).

    gsm8k   "Question: {question}\\nAnswer:"                                  -> " {answer}"
    spider  "Database: {db_id}\\n{schema}\\nQuestion: {question}\\nSQL:"         -> " {query}"
    nlrx    "Description: {description}\\nRegex:"                              -> " {regex}"
    django  "Pseudo-code: {anno}\\nPython:"                                    -> " {code}"
    mmlu    "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
            "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:"                  -> " {A|B|C|D}"

GSM8K and MMLU copy lm-eval's own `gsm8k` and `mmlu` formats so scores stay comparable.
"""

from __future__ import annotations

from typing import Callable

FEWSHOT_DELIMITER = "\n\n"  # between few-shot examples (lm-eval's default)
TARGET_DELIMITER = " "  # between a prompt and its answer (lm-eval's default)
MMLU_LETTERS = ("A", "B", "C", "D")


def _gsm8k_text(doc: dict) -> str:
    return f"Question: {doc['question']}\nAnswer:"


def _spider_text(doc: dict) -> str:
    return f"Database: {doc['db_id']}\n{doc['schema']}\nQuestion: {doc['question']}\nSQL:"


def _nlrx_text(doc: dict) -> str:
    return f"Description: {doc['description']}\nRegex:"


def _django_text(doc: dict) -> str:
    return f"Pseudo-code: {doc['anno']}\nPython:"


def _mmlu_text(doc: dict) -> str:
    # MMLU is fixed at zero-shot, so the per-subject header lm-eval puts in `description` lives here.
    subject = doc["subject"].replace("_", " ")
    options = "".join(f"\n{letter}. {choice}" for letter, choice in zip(MMLU_LETTERS, doc["choices"]))
    return (
        f"The following are multiple choice questions (with answers) about {subject}.\n\n"
        f"{doc['question'].strip()}{options}\nAnswer:"
    )


_TEXT: dict[str, Callable[[dict], str]] = {
    "gsm8k": _gsm8k_text,
    "spider": _spider_text,
    "nlrx": _nlrx_text,
    "django": _django_text,
    "mmlu": _mmlu_text,
}

_TARGET: dict[str, Callable[[dict], str]] = {
    "gsm8k": lambda doc: doc["answer"],
    "spider": lambda doc: doc["query"],
    "nlrx": lambda doc: doc["regex"],
    "django": lambda doc: doc["code"],
    "mmlu": lambda doc: MMLU_LETTERS[doc["answer"]],
}


def _lookup(table: dict[str, Callable[[dict], str]], task: str) -> Callable[[dict], str]:
    if task not in table:
        raise ValueError(f"unknown task {task!r}; expected one of {tuple(table)}")
    return table[task]


def doc_to_text(task: str, doc: dict) -> str:
    """One example's query text, ending exactly where the answer starts (before TARGET_DELIMITER)."""
    return _lookup(_TEXT, task)(doc)


def doc_to_target(task: str, doc: dict) -> str:
    """The gold answer text as the model should produce it (without the leading TARGET_DELIMITER)."""
    return _lookup(_TARGET, task)(doc)


def training_pair(task: str, doc: dict) -> tuple[str, str]:
    """(prompt, response) for fine-tuning: the zero-shot eval prompt and the continuation it expects."""
    return doc_to_text(task, doc), TARGET_DELIMITER + doc_to_target(task, doc)
