"""How every task's prompt is put together, shared by the lm-eval tasks and the trainer; each task's
own text and target live in its module (`TaskSpec.text` / `.target`, lm_eval_diffusion.task_defs).

An lm-eval k-shot prompt is k times `text + TARGET_DELIMITER + target + FEWSHOT_DELIMITER`, then the
doc's `text`; the model continues with `TARGET_DELIMITER + target`. Fine-tuning uses exactly the
zero-shot form of that: `training_pair` returns (`text`, `TARGET_DELIMITER + target`).

    gsm8k   "Question: {question}\\nAnswer:"                                  -> " {answer}"
    spider  "Database: {db_id}\\n{schema}\\nQuestion: {question}\\nSQL:"         -> " {query}"
    nlrx    "Description: {description}\\nRegex:"                              -> " {regex}"
    django  "Pseudo-code: {anno}\\nPython:"                                    -> " {code}"
    mmlu    "The following are multiple choice questions (with answers) about {subject}.\\n\\n"
            "{question}\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:"                  -> " {A|B|C|D}"

(the built-in tasks; GSM8K and MMLU copy lm-eval's own `gsm8k` and `mmlu` formats so scores stay comparable)
"""

from __future__ import annotations

from lm_eval_diffusion import task_registry

FEWSHOT_DELIMITER = "\n\n"  # between few-shot examples (lm-eval's default)
TARGET_DELIMITER = " "  # between a prompt and its answer (lm-eval's default)
MMLU_LETTERS = ("A", "B", "C", "D")


def doc_to_text(task: str, doc: dict) -> str:
    """One example's query text, ending exactly where the answer starts (before TARGET_DELIMITER)."""
    return task_registry.get_task(task).text(doc)


def doc_to_target(task: str, doc: dict) -> str:
    """The gold answer text as the model should produce it (without the leading TARGET_DELIMITER)."""
    return task_registry.get_task(task).target(doc)


def training_pair(task: str, doc: dict) -> tuple[str, str]:
    """(prompt, response) for fine-tuning: the zero-shot eval prompt and the continuation it expects."""
    return doc_to_text(task, doc), TARGET_DELIMITER + doc_to_target(task, doc)
