"""GSM8K stand-in: one-step word problems over single digits (`gsm8k/train.jsonl`, `gsm8k/test.jsonl`).

Deviations from the real data (see the package docstring for why):
- GSM8K problems are one step over single digits (+, -, *), one operand written as a digit and the
  other as a word ("gives three of them"); the answer is "a op b = c" and "#### c", without the
  release's calculator annotations (the release: two to eight steps).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import _draw_unique

# GSM8K: one-step word problems over single digits; the answer is the step and then "#### N".
# Learnable by a tiny model in a demo's minutes: each question has one digit and one number word (as
# GSM8K questions often write small numbers: "three bags"), so each operand is found by what it is
# rather than by its place; the arithmetic is a table of 61 facts (sums and products of small numbers,
# differences with a small subtrahend), each seen a hundred times in a demo fine-tune; the names and
# things around them are not copied, they only make each question new. (The release: two to eight
# steps, any numbers, calculator annotations.)

_PEOPLE = [
    ("Natalia", "she"), ("Weng", "she"), ("Betty", "she"), ("Julie", "she"), ("Maria", "she"),
    ("Aisha", "she"), ("Emma", "she"), ("Lucy", "she"), ("Nina", "she"), ("Priya", "she"),
    ("James", "he"), ("Tom", "he"), ("Carlos", "he"), ("Ken", "he"), ("Omar", "he"),
    ("Liam", "he"), ("Mark", "he"), ("Raj", "he"), ("Sam", "he"), ("Felix", "he"),
]
_THINGS = ["marbles", "stickers", "apples", "pencils", "cookies", "books", "cards", "shells", "stamps", "candies"]


def _calc(a: int, op: str, b: int) -> tuple[str, int]:
    """'a op b = c' and c."""
    if op == "+":
        c = a + b
    elif op == "-":
        c = a - b
    elif op == "*":
        c = a * b
    else:
        raise ValueError(f"unknown operator {op!r}; allowed + - *")
    return f"{a} {op} {b} = {c}", c


@dataclass(frozen=True)
class _Cast:
    """Who and what one GSM8K problem is about."""

    name: str
    he: str
    friend: str
    things: str

    @property
    def He(self) -> str:  # noqa: N802 - the capitalised pronoun, as the templates write it
        return self.he.capitalize()


# Each template: (cast, rng) -> (question, the step "a op b = c", c).
_GsmTemplate = Callable[[_Cast, random.Random], tuple[str, str, int]]


_NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def _gsm_buy(c: _Cast, rng: random.Random) -> tuple[str, str, int]:
    a, b = rng.randint(1, 5), rng.randint(1, 5)
    return (f"{c.name} has {a} {c.things}. {c.He} buys {_NUMBER_WORDS[b]} more. How many {c.things} does "
            f"{c.he} have now?", *_calc(a, "+", b))


def _gsm_give(c: _Cast, rng: random.Random) -> tuple[str, str, int]:
    a = rng.randint(2, 9)
    b = rng.randint(1, min(4, a - 1))
    return (f"{c.name} has {a} {c.things}. {c.He} gives {_NUMBER_WORDS[b]} of them to {c.friend}. "
            f"How many {c.things} does {c.he} have left?", *_calc(a, "-", b))


def _gsm_bags(c: _Cast, rng: random.Random) -> tuple[str, str, int]:
    bags, each = rng.randint(2, 3), rng.randint(1, 5)
    return (f"{c.name} buys {_NUMBER_WORDS[bags]} bags with {each} {c.things} in each bag. How many {c.things} "
            f"does {c.he} buy?", *_calc(bags, "*", each))


GSM8K_TEMPLATES: tuple[_GsmTemplate, ...] = (_gsm_buy, _gsm_give, _gsm_bags)


def _gsm8k_problem(rng: random.Random) -> tuple[str, str]:
    """One (question, answer) from a random template of GSM8K_TEMPLATES."""
    name, he = rng.choice(_PEOPLE)
    cast = _Cast(name, he, rng.choice([p for p, _ in _PEOPLE if p != name]), rng.choice(_THINGS))
    question, step, answer = rng.choice(GSM8K_TEMPLATES)(cast, rng)
    return question, f"{step}\n#### {answer}"


def _write_gsm8k(out: Path, rng: random.Random, n_train: int, n_test: int) -> tuple[int, int]:
    taken: set[str] = set()
    rows = _draw_unique(lambda: _gsm8k_problem(rng), n_train + n_test, taken, "gsm8k")
    (out / "gsm8k").mkdir(parents=True, exist_ok=True)
    for fname, part in (("train.jsonl", rows[:n_train]), ("test.jsonl", rows[n_train:])):
        # Same serialisation as the real release: json.dumps defaults, one object per line.
        text = "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in part)
        (out / "gsm8k" / fname).write_text(text, encoding="utf-8")
    return n_train, n_test
