"""Text corpus stand-in: one document per line (`text/train.txt`, `text/valid.txt`).

Deviations from the real data (see the package docstring for why):
- The text corpus is drawn from fresh random streams of the same generators, minus every held-out
  item: the base pre-trained on it knows the tasks' kind of text and none of their test items.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import _MAX_DRAWS_PER_ITEM, _draw_unique
from dllm_jepa_train.toy.synthetic.django import _django_line
from dllm_jepa_train.toy.synthetic.gsm8k import _gsm8k_problem
from dllm_jepa_train.toy.synthetic.nlrx import _nlrx_line
from dllm_jepa_train.toy.synthetic.spider import _DB_ROWS, _DBS, _spider_question
from lm_eval_diffusion.task_data import spider_schema

# Text corpus: one document per line, for pre-training a tiny base and the held-out loss probe.

_ADJECTIVES = ["quiet", "bright", "old", "small", "busy", "green", "cold", "famous", "narrow", "warm"]
_NOUNS = ["river", "village", "library", "market", "garden", "station", "bridge", "museum", "harbor", "forest"]
_AGENTS = ["farmer", "teacher", "engineer", "painter", "doctor", "sailor", "student", "baker", "writer", "pilot"]
_VERBS = ["visited", "painted", "described", "repaired", "crossed", "studied", "opened", "photographed"]
_TIMES = ["in the morning", "after the storm", "every summer", "during the war", "in 1998", "last year"]


# General sentences: one small function per form.
_GENERAL_FORMS: tuple[Callable[[random.Random, str, str, str, str], str], ...] = (
    lambda rng, adj, noun, agent, verb: f"The {agent} {verb} the {adj} {noun} {rng.choice(_TIMES)}.",
    lambda rng, adj, noun, agent, verb: (f"{'An' if adj[0] in 'aeiou' else 'A'} {adj} {noun} stands near the "
                                         f"{rng.choice(_NOUNS)}, and many people visit it {rng.choice(_TIMES)}."),
    lambda rng, adj, noun, agent, verb: f"{rng.choice(_TIMES).capitalize()}, the {agent} wrote a book about the {noun}.",
    lambda rng, adj, noun, agent, verb: (f"The {noun} is {adj}, but the {rng.choice(_NOUNS)} beside it is "
                                         f"{rng.choice(_ADJECTIVES)}."),
)


def _general_sentence(rng: random.Random) -> str:
    adj, noun, agent, verb = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_AGENTS), rng.choice(_VERBS)
    return rng.choice(_GENERAL_FORMS)(rng, adj, noun, agent, verb)


def _schema_sentences(rng: random.Random, k: int) -> list[str]:
    """k distinct sentences, each describing one table of the generated databases."""
    sentences = []
    for db, t in rng.sample([(db, t) for db in _DBS for t in db.tables], k):
        cols = [c.nl for c in t.cols]
        sentences.append(f"The {db.db_id} database has a table {t.name} with columns {', '.join(cols[:-1])} and {cols[-1]}.")
    return sentences


def _write_text(out: Path, rng: random.Random, n_train: int, n_valid: int, held_out: set[str]) -> tuple[int, int]:
    """Documents from fresh draws of every generator; no evaluation item and no line appears twice."""

    def fresh(draw: Callable[[], tuple[str, ...]]) -> tuple[str, ...]:
        # More tries than elsewhere: held-out items fill a good part of the small NL-RX and Django spaces.
        for _ in range(_MAX_DRAWS_PER_ITEM * 20):
            item = draw()
            if item[0].strip() not in held_out:
                return item
        raise ValueError("text corpus: templates exhausted by the task files; lower scale")

    def spider_doc() -> list[str]:
        db = rng.choice(_DBS)
        schema = spider_schema(str(out / "spider" / "database" / db.db_id / f"{db.db_id}.sqlite")).replace("\n", " ")

        def pair() -> tuple[str, str]:
            q, query = _spider_question(rng, db, spider_rows[db.db_id])
            return q, query.sql_text()

        return [f"Database: {db.db_id} {schema}"] + [
            "Question: {} SQL: {}".format(*fresh(pair)) for _ in range(rng.randint(1, 3))]

    # Document kinds: name -> (weight, draw of the document's parts). Task pairs are written the way the
    # tasks' prompts put them ("Question: ... Answer: ..."), newlines as spaces: the base knows the
    # tasks' kind of text, though not the prompts' exact layout, and never a held-out item.
    kinds: dict[str, tuple[int, Callable[[], list[str]]]] = {
        "gsm8k": (5, lambda: ["Question: {} Answer: {}".format(*fresh(lambda: _gsm8k_problem(rng)))
                              for _ in range(rng.randint(1, 2))]),
        "nlrx": (3, lambda: ["Description: {} Regex: {}".format(*fresh(lambda: _nlrx_line(rng)))
                             for _ in range(rng.randint(2, 4))]),
        "django": (3, lambda: ["Pseudo-code: {} Python: {}".format(*(s.strip() for s in fresh(lambda: _django_line(rng))))
                               for _ in range(rng.randint(3, 6))]),
        "spider": (3, spider_doc),
        "schema": (1, lambda: _schema_sentences(rng, rng.randint(2, 4))),
        "general": (5, lambda: [_general_sentence(rng) for _ in range(rng.randint(2, 5))]),
    }

    def document() -> str:
        name = rng.choices(list(kinds), weights=[w for w, _ in kinds.values()])[0]
        return " ".join(kinds[name][1]()).replace("\n", " ")

    # Rows only for choosing filter values; the text stream does not consume the task files' randomness.
    row_rng = random.Random(rng.random())
    spider_rows = {db.db_id: _DB_ROWS[db.db_id](row_rng) for db in _DBS}
    docs = [d for (d,) in _draw_unique(lambda: (document(),), n_train + n_valid, set(), "text")]
    (out / "text").mkdir(parents=True, exist_ok=True)
    (out / "text" / "train.txt").write_text("".join(d + "\n" for d in docs[:n_train]), encoding="utf-8")
    (out / "text" / "valid.txt").write_text("".join(d + "\n" for d in docs[n_train:]), encoding="utf-8")
    return n_train, n_valid
