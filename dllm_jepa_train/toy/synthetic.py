"""Small synthetic task datasets in the exact on-disk layout of the real data directory.

The demo must run on a fresh machine without network, so this module writes stand-ins for the four
task datasets of the paper (GSM8K, Spider, NL-RX-Synth, Django) plus a plain-text corpus, with the same
file names, formats and record schemas as `../shared/data`. The task loaders that read the real
directory read this one unchanged. Everything is drawn from templates with a seeded `random.Random`
per dataset, so the same seed gives byte-identical files.

Smallest run (CPU, about a second):

    python -m dllm_jepa_train.toy.synthetic --out /tmp/synthetic_data --seed 0 --scale 0.1

Layout written under `out_dir`:

    README.md
    gsm8k/train.jsonl, gsm8k/test.jsonl          {"question", "answer"}; answer ends in "#### N"
    spider/dev.json, spider/train_spider.json    Spider records (db_id, query, query_toks, ...)
    spider/tables.json                           Spider schemas for the generated databases
    spider/database/<db_id>/<db_id>.sqlite       demo_shop and demo_school
    nlrx/synth_src.txt, nlrx/synth_targ.txt      aligned description / dk.brics regex lines
    django/all.anno, django/all.code             aligned pseudo-code / space-tokenised Python lines
    text/train.txt, text/valid.txt               one document per line, disjoint sets of lines

What is mirrored from the real files: JSON serialisation (json.dumps defaults per GSM8K line, indent 4
for dev.json, indent 3 for tables.json, no final newline), no final newline in the NL-RX files, two
leading spaces on Django annotations and uneven leading spaces on code lines, Spider's query spacing
(' ,  ', '  =  ') and token lists, and the NL-RX release's phrasing and dk.brics bracketing per rule.

Deviations from the real data, all deliberate: the data is shaped so that a tiny model learns it in a
CPU demo's minutes. Every task is drawn from a small table of templates (GSM8K_TEMPLATES, _RX_FORMS,
_DJANGO_TEMPLATES, SPIDER_TEMPLATES) whose slots each take a value from a short closed list of its own
kind (a digit, a character class, a string, a variable, a table, a city ...), so a test item is a new
combination of parts the training split has seen, and an answer token is found in the question by what
it is rather than where it stands (measured: a 4-layer width-128 model trained on one such task alone
copies its slots after several hundred steps; copying by position alone, or from an open vocabulary,
took thousands of steps in our trials):
- GSM8K problems are one step over single digits (+, -, *), one operand written as a digit and the
  other as a word ("gives three of them"); the answer is "a op b = c" and "#### c", without the
  release's calculator annotations (the release: two to eight steps).
- NL-RX lines have one operator over at most one character class and one string; strings come from a
  list of twelve (the release: up to three nested operators, strings always named 'dog', 'truck', ...).
- Django lines use one name per kind (variable, function, module, exception, digit); nine templates
  over sixteen variables, each phrased as the release phrases that statement.
- Spider questions are single-table counts, aggregates and text-value filters (no joins, HAVING, set
  operations, numeric comparisons): short gold queries.
- Held-out items (GSM8K test, Spider dev, NL-RX validation/test, Django dev/test) are unique and never
  appear in any training file or in the text corpus. Training items may repeat (Spider, Django), as
  the release's Django lines do; every NL-RX line is unique, since its split is a random one by line.
  Spider and Django hold out at most half of each template's distinct lines, so every template keeps
  most of its lines for training (uncapped, the held-out items used up the small templates: training
  then never showed "return V" with most variables, and the model memorised the few it did show).
- Spider `sql` holds the parsed form for the generated templates (the same nested lists as the real
  release), computed from the query structure rather than by Spider's own parser.
- Spider `train_spider.json` uses the same two databases as `dev.json`.
- The text corpus is drawn from fresh random streams of the same generators, minus every held-out
  item: the base pre-trained on it knows the tasks' kind of text and none of their test items.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lm_eval_diffusion.task_data import DJANGO_NUM_LINES, django_split_range, nlrx_split_indices, spider_schema

# Sizes at scale 1.0, and the floors that keep scale=0.1 usable for fast tests.
DEFAULT_SIZES: dict[str, int] = {
    "gsm8k_train": 2000,
    "gsm8k_test": 200,
    "spider_dev": 120,
    "spider_train": 500,
    "nlrx": 800,
    "django": 1400,
    "text_train": 8000,
    "text_valid": 300,
}
MIN_SIZES: dict[str, int] = {
    "gsm8k_train": 50,
    "gsm8k_test": 20,
    "spider_dev": 40,
    "spider_train": 60,
    "nlrx": 100,
    "django": 100,
    "text_train": 100,
    "text_valid": 20,
}

# The real Django split is by line order over 18,805 lines: 0-15999 train, 16000-16999 dev, rest test.
DJANGO_REAL_NUM_LINES = DJANGO_NUM_LINES

# Bounded retries when drawing unique items; a template space too small for the request raises.
_MAX_DRAWS_PER_ITEM = 50


def django_split_bounds(n_lines: int) -> tuple[range, range, range]:
    """(train, dev, test) line ranges: the standard 0-15999 / 16000-16999 / 17000-18804 for the real
    18,805 lines, the same fractions otherwise; the task loader's rule, so both always agree."""
    return tuple(django_split_range(split, n_lines) for split in ("train", "validation", "test"))


def _scaled(name: str, scale: float) -> int:
    return max(MIN_SIZES[name], round(DEFAULT_SIZES[name] * scale))


def _draw_unique(draw: Callable[[], tuple[str, ...]], n: int, taken: set[str], what: str) -> list[tuple[str, ...]]:
    """Call `draw` until n items whose first field is not in `taken`; adds those fields to `taken`."""
    items: list[tuple[str, ...]] = []
    for _ in range(n * _MAX_DRAWS_PER_ITEM):
        if len(items) == n:
            return items
        item = draw()
        if item[0] not in taken:
            taken.add(item[0])
            items.append(item)
    if len(items) == n:
        return items
    raise ValueError(f"only {len(items)} unique {what} items from the templates, {n} requested; lower scale")


# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------
# NL-RX-Synth: descriptions and regexes from the NL-RX grammar, in the dk.brics syntax of the release.


@dataclass(frozen=True)
class _Rx:
    """A node of the NL-RX grammar: its description and its regex."""

    nl: str
    rx: str


_RX_CLASSES = [
    ("a letter", "[A-Za-z]"),
    ("a capital letter", "[A-Z]"),
    ("a lower-case letter", "[a-z]"),
    ("a vowel", "[AEIOUaeiou]"),
    ("a number", "[0-9]"),
    ("a character", "."),
]
# The release's longest description has 23 words and its longest regex 59 characters; the toy's lines
# are far shorter (at most 10 words and 25 characters: a regex fits the demo's 16-token canvas).
# The release names its strings in a fixed order ('dog' first, then 'truck', 'ring', 'lake'); the toy
# draws its one string per line from this list, so the string is a slot value like the character class.
_RX_WORDS = ["dog", "truck", "ring", "lake", "bird", "tree", "fish", "star", "road", "door", "moon", "ship"]


# Builders, one per grammar rule; each mirrors how the release writes that rule (checked in the tests
# against real lines), including its loose parenthesisation, e.g. ".*(A)|(B).*" for "containing A or B".


def _rx_before(a: _Rx, b: _Rx) -> _Rx:
    return _Rx(f"{a.nl} before {b.nl}", f"({a.rx}).*({b.rx}).*")


def _rx_or(*xs: _Rx) -> _Rx:
    nl = f"{xs[0].nl} or {xs[1].nl}" if len(xs) == 2 else f"either {', '.join(x.nl for x in xs[:-1])}, or {xs[-1].nl}"
    return _Rx(nl, "|".join(f"({x.rx})" for x in xs))


def _rx_and(*xs: _Rx) -> _Rx:
    nl = f"{xs[0].nl} and {xs[1].nl}" if len(xs) == 2 else f"{', '.join(x.nl for x in xs[:-1])}, and {xs[-1].nl}"
    return _Rx(nl, "&".join(f"({x.rx})" for x in xs))


def _rx_followed(a: _Rx, b: _Rx) -> _Rx:
    """Only between terminals, whose regexes then appear unbracketed: 'dog.*truck.*'."""
    return _Rx(f"{a.nl} followed by {b.nl}", f"{a.rx}.*{b.rx}.*")


def _rx_repeat(a: _Rx, how: str | int) -> _Rx:
    """how: '+' (at least once), '*' (zero or more times) or n >= 2 (n or more times)."""
    if how == "+":
        return _Rx(f"{a.nl} at least once", f"({a.rx})+")
    if how == "*":
        return _Rx(f"{a.nl}, zero or more times", f"({a.rx})*")
    if not isinstance(how, int) or how < 2:
        raise ValueError(f"repetition must be '+', '*' or an int >= 2, got {how!r}")
    return _Rx(f"{a.nl}, {how} or more times", f"({a.rx}){{{how},}}")


def _drop_either(nl: str) -> str:
    """The release never says "not either ..." or "don't have either ...": it drops the 'either'."""
    return nl[len("either "):] if nl.startswith("either ") else nl


def _rx_not(a: _Rx) -> _Rx:
    return _Rx(f"not {_drop_either(a.nl)}", f"~({a.rx})")


def _rx_containing(a: _Rx) -> _Rx:
    return _Rx(f"containing {a.nl}", f".*{a.rx}.*")


def _rx_starting(a: _Rx) -> _Rx:
    return _Rx(f"starting with {a.nl}", f"({a.rx})(.*)")


def _rx_ending(a: _Rx) -> _Rx:
    return _Rx(f"ending with {a.nl}", f"(.*)({a.rx})")


def _rx_lines(node: _Rx, verb: str = "with") -> tuple[str, str]:
    """The full 'lines ...' line. The release picks the word after 'lines' from how the description
    begins; `verb` ('with', 'having' or 'containing') is used only where it has the choice."""
    modifiers = ("containing ", "starting with ", "ending with ")
    if node.nl.startswith(modifiers):
        return f"lines {node.nl}", node.rx
    if node.nl.startswith("not "):
        rest = node.nl[len("not "):]
        return f"lines not {'' if rest.startswith(modifiers) else 'having '}{rest}", node.rx
    if verb == "containing":
        return f"lines containing {node.nl}", f".*{node.rx}.*"
    if verb not in ("with", "having"):
        raise ValueError(f"unknown verb {verb!r}; allowed with, having, containing")
    return f"lines {verb} {node.nl}", node.rx


def _rx_lines_only(a: _Rx) -> tuple[str, str]:
    """'lines containing only A' is the bare regex of A."""
    return f"lines containing only {a.nl}", a.rx


# Every line has at most two slots, a character class c and a string w, each filled from its own
# closed list, so an answer token is found by what it is (a class phrase, a quoted string, a digit),
# not by where it stands; t is either of the two. Each form: (c, w, t, n, rng) -> (description, regex).
_RxForm = Callable[[_Rx, _Rx, _Rx, int], tuple[str, str]]
_RX_FORMS: tuple[_RxForm, ...] = (
    lambda c, w, t, n: _rx_lines(t, "containing"),
    lambda c, w, t, n: _rx_lines(_rx_starting(t)),
    lambda c, w, t, n: _rx_lines(_rx_ending(t)),
    lambda c, w, t, n: _rx_lines(_rx_not(t)),
    lambda c, w, t, n: _rx_lines(_rx_repeat(t, n)),
    lambda c, w, t, n: _rx_lines_only(c),
    lambda c, w, t, n: _rx_lines(_rx_before(c, w)),
    lambda c, w, t, n: _rx_lines(_rx_or(w, c)),
    lambda c, w, t, n: _rx_lines(_rx_and(c, w)),
    lambda c, w, t, n: _rx_lines(_rx_followed(c, w)),
)


def _nlrx_line(rng: random.Random) -> tuple[str, str]:
    """One (description, regex) from a random form of _RX_FORMS."""
    c = _Rx(*rng.choice(_RX_CLASSES))
    word = rng.choice(_RX_WORDS)
    w = _Rx(f"the string '{word}'", word)
    return rng.choice(_RX_FORMS)(c, w, rng.choice([c, w]), rng.randint(2, 7))


def _write_nlrx(out: Path, rng: random.Random, n: int) -> int:
    pairs = _draw_unique(lambda: _nlrx_line(rng), n, set(), "nlrx")
    (out / "nlrx").mkdir(parents=True, exist_ok=True)
    # The release has no newline after its last line; mirrored, though the loaders read both alike.
    (out / "nlrx" / "synth_src.txt").write_text("\n".join(s for s, _ in pairs), encoding="utf-8")
    (out / "nlrx" / "synth_targ.txt").write_text("\n".join(t for _, t in pairs), encoding="utf-8")
    return n


# ----------------------------------------------------------------------------------------------------
# Django: pseudo-code annotations and space-tokenised Python lines. Each template has at most one slot
# per kind of name (a variable, a function, a module, an exception, a digit), each filled from a short
# closed list, so the model finds every name it must copy by what it is rather than where it stands.

_DJ_VARS = ["value", "result", "name", "key", "data", "items", "path", "line", "text", "args", "token", "node",
            "request", "context", "options", "output"]
_DJ_FUNCS = ["escape", "force_text", "get_value", "make_key"]
_DJ_IMPORTS = ["os", "re", "sys", "json", "copy", "time", "math", "warnings"]
_DJ_EXCEPTIONS = ["ValueError", "KeyError", "TypeError", "IndexError", "ImportError", "AttributeError"]
# Leading indentation of the real code lines, roughly by frequency: mostly 1-4, then nested blocks.
_DJ_INDENTS = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 10, 10, 10, 14, 14, 14, 18, 18, 22, 26]


@dataclass(frozen=True)
class _DjParts:
    """The names one Django line may use; every template picks what it needs."""

    v: str  # a variable
    f: str  # a function
    module: str
    exc: str  # an exception class
    n: int  # a digit


# Each template: parts -> (annotation without its two leading spaces, code without indentation),
# phrased as the release phrases the same statement.
_DJANGO_TEMPLATES: tuple[Callable[[_DjParts], tuple[str, str]], ...] = (
    lambda p: (f"return {p.v}.", f"return {p.v}"),
    lambda p: (f"{p.v} is integer {p.n}.", f"{p.v} = {p.n}"),
    lambda p: (f"if {p.v} is true,", f"if {p.v} :"),
    lambda p: (f"if {p.v} is None,", f"if {p.v} is None :"),
    lambda p: (f"{p.v} is an empty list.", f"{p.v} = [ ]"),
    lambda p: (f"{p.v} is an empty dictionary.", f"{p.v} = {{ }}"),
    lambda p: (f"call the function {p.f} with an argument {p.v}.", f"{p.f} ( {p.v} )"),
    lambda p: (f"import module {p.module}.", f"import {p.module}"),
    lambda p: (f"if {p.exc} exception is caught,", f"except {p.exc} :"),
)


def _django_template_line(rng: random.Random) -> tuple[int, str, str]:
    """(template index, annotation, code); the code is space-tokenised and carries its indentation."""
    parts = _DjParts(rng.choice(_DJ_VARS), rng.choice(_DJ_FUNCS), rng.choice(_DJ_IMPORTS),
                     rng.choice(_DJ_EXCEPTIONS), rng.randint(0, 9))
    index = rng.randrange(len(_DJANGO_TEMPLATES))
    anno, code = _DJANGO_TEMPLATES[index](parts)
    return index, "  " + anno, " " * rng.choice(_DJ_INDENTS) + code


def _django_line(rng: random.Random) -> tuple[str, str]:
    """One (annotation, code) pair from a random template of _DJANGO_TEMPLATES."""
    return _django_template_line(rng)[1:]


# Candidate draws per held-out item when choosing the held-out set (see _draw_held_out_first).
_HELD_OUT_POOL_DRAWS = 10

_Item = tuple  # a drawn item; its first field is the key that must not repeat across the split


def _draw_held_out_first(draw: Callable[[], _Item], stratum: Callable[[_Item], object], n_held_out: int,
                         n_train: int, what: str, rng: random.Random) -> tuple[list[_Item], list[_Item]]:
    """(held-out items, training items): the held-out items are unique; training items never share a
    first field with any of them but may repeat each other, as lines of the real releases do.

    Held-out items are the first distinct draws, as a test split drawn like the training split would
    be, except that no template (`stratum`) gives up more than half of its distinct lines, counted in
    a pool of _HELD_OUT_POOL_DRAWS * n_held_out draws. Without the cap the held-out items used up the
    small templates (a dozen lines each) entirely, and training never showed them with most of their
    slot values. So a test item is a new combination of parts that training shows, in the same
    template too. Raises ValueError when the capped pool holds fewer than n_held_out items.
    """
    pool: dict[str, _Item] = {}
    for _ in range(_HELD_OUT_POOL_DRAWS * n_held_out):
        item = draw()
        pool.setdefault(item[0], item)  # in order of first draw
    sizes = Counter(stratum(item) for item in pool.values())
    taken: Counter = Counter()
    held_out: list[_Item] = []
    for item in pool.values():
        key = stratum(item)
        if taken[key] < sizes[key] // 2:
            taken[key] += 1
            held_out.append(item)
            if len(held_out) == n_held_out:
                break
    if len(held_out) < n_held_out:
        raise ValueError(f"only {len(held_out)} distinct {what} items can be held out (at most half of each "
                         f"template's), {n_held_out} requested; lower scale")
    rng.shuffle(held_out)  # the capped templates fill first: mix them through the dev and test parts
    keys = {item[0] for item in held_out}
    train: list[_Item] = []
    for _ in range(n_train * _MAX_DRAWS_PER_ITEM):
        if len(train) == n_train:
            return held_out, train
        item = draw()
        if item[0] not in keys:
            train.append(item)
    raise ValueError(f"only {len(train)} {what} training items outside the held-out ones; lower scale")


def _write_django(out: Path, rng: random.Random, n: int) -> int:
    # The dev and test lines (the file's end, by the split's line order) are unique and never appear
    # among the training lines; training lines repeat, as the release's do ("try :").
    def keyed_line() -> tuple[str, str, str, int]:  # (annotation as the loader reads it, the lines, template)
        index, anno, code = _django_template_line(rng)
        return anno.strip(), anno, code, index

    train_range = django_split_bounds(n)[0]
    held_out, train = _draw_held_out_first(keyed_line, lambda item: item[3], n - len(train_range),
                                           len(train_range), "django", rng)
    pairs = [(a, c) for _, a, c, _ in train + held_out]
    (out / "django").mkdir(parents=True, exist_ok=True)
    (out / "django" / "all.anno").write_text("".join(a + "\n" for a, _ in pairs), encoding="utf-8")
    (out / "django" / "all.code").write_text("".join(c + "\n" for _, c in pairs), encoding="utf-8")
    return n


# ----------------------------------------------------------------------------------------------------
# Spider: two SQLite databases, their tables.json schemas, and templated questions with gold SQL.

_AGG_IDS = {"none": 0, "max": 1, "min": 2, "count": 3, "sum": 4, "avg": 5}
_WHERE_OP_IDS = {"=": 2, ">": 3, "<": 4}
_AGG_WORDS = {"avg": "average", "max": "maximum", "min": "minimum", "sum": "total"}


@dataclass(frozen=True)
class _Col:
    """A column: SQL name, Spider type, and the phrases its question templates need."""

    name: str
    type: str  # Spider column type: "number" or "text"
    nl: str  # natural name, e.g. "order year"
    eq: str = ""  # text filter phrase with {v}, e.g. "from {v}"
    aggregate: bool = False  # a number questions may take the average, maximum, ... of


@dataclass(frozen=True)
class _Table:
    name: str
    plural: str
    cols: tuple[_Col, ...]  # first column is the integer primary key
    label: str = ""  # column listed by "names of ..." questions ("" for link tables)


@dataclass(frozen=True)
class _Relation:
    """A foreign key child.fk -> parent.pk (in the schema and tables.json; no template joins)."""

    child: str
    fk: str
    parent: str


_SHOP_TABLES = (
    _Table("customers", "customers", (
        _Col("customer_id", "number", "customer id"),
        _Col("name", "text", "name"),
        _Col("city", "text", "city", eq="from {v}"),
        _Col("age", "number", "age", aggregate=True),
        _Col("balance", "number", "balance", aggregate=True),
    ), label="name"),
    _Table("products", "products", (
        _Col("product_id", "number", "product id"),
        _Col("name", "text", "name"),
        _Col("category", "text", "category", eq="in the {v} category"),
        _Col("price", "number", "price", aggregate=True),
        _Col("stock", "number", "stock", aggregate=True),
    ), label="name"),
    _Table("orders", "orders", (
        _Col("order_id", "number", "order id"),
        _Col("customer_id", "number", "customer id"),
        _Col("product_id", "number", "product id"),
        _Col("quantity", "number", "quantity", aggregate=True),
        _Col("order_year", "number", "order year", aggregate=True),
    )),
)
_SHOP_RELATIONS = (
    _Relation("orders", "customer_id", "customers"),
    _Relation("orders", "product_id", "products"),
)
_SCHOOL_TABLES = (
    _Table("students", "students", (
        _Col("student_id", "number", "student id"),
        _Col("name", "text", "name"),
        _Col("major", "text", "major", eq="majoring in {v}"),
        _Col("age", "number", "age", aggregate=True),
        _Col("height", "number", "height", aggregate=True),
    ), label="name"),
    _Table("courses", "courses", (
        _Col("course_id", "number", "course id"),
        _Col("title", "text", "title"),
        _Col("department", "text", "department", eq="in the {v} department"),
        _Col("credits", "number", "number of credits", aggregate=True),
        _Col("capacity", "number", "capacity", aggregate=True),
    ), label="title"),
    _Table("enrollments", "enrollments", (
        _Col("enrollment_id", "number", "enrollment id"),
        _Col("student_id", "number", "student id"),
        _Col("course_id", "number", "course id"),
        _Col("grade", "number", "grade", aggregate=True),
    )),
)
_SCHOOL_RELATIONS = (
    _Relation("enrollments", "student_id", "students"),
    _Relation("enrollments", "course_id", "courses"),
)

_FIRST_NAMES = ["Alice", "Bruno", "Chen", "Dana", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas",
                "Kira", "Luis", "Mei", "Nora", "Oscar", "Paula", "Quinn", "Rosa", "Sven", "Tara"]
_LAST_NAMES = ["Smith", "Garcia", "Kim", "Novak", "Okafor", "Rossi", "Silva", "Weber", "Yilmaz", "Dubois"]
_CITIES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Tokyo", "Boston", "Chicago", "Denver", "Austin"]
_CATEGORIES = ["Books", "Toys", "Garden", "Kitchen", "Sports", "Music"]
_PRODUCT_WORDS = (["Blue", "Red", "Small", "Large", "Classic", "Smart"],
                  ["Lamp", "Chair", "Kettle", "Ball", "Guitar", "Novel", "Puzzle", "Shovel"])
_MAJORS = ["Math", "Physics", "History", "Biology", "Art", "Economics"]
_DEPARTMENTS = ["Science", "Humanities", "Arts", "Engineering"]
_COURSE_WORDS = (["Intro to", "Advanced", "Applied", "Modern"],
                 ["Algebra", "Optics", "Genetics", "Painting", "Markets", "Rome", "Robotics"])


def _person_names(rng: random.Random, n: int) -> list[str]:
    pool = [f"{a} {b}" for a in _FIRST_NAMES for b in _LAST_NAMES]
    return rng.sample(pool, n)


def _shop_rows(rng: random.Random) -> dict[str, list[tuple]]:
    names = _person_names(rng, 30)
    customers = [(i + 1, names[i], rng.choice(_CITIES), rng.randint(18, 75), rng.randint(0, 2000)) for i in range(30)]
    products_names = rng.sample([f"{a} {b}" for a in _PRODUCT_WORDS[0] for b in _PRODUCT_WORDS[1]], 20)
    products = [(i + 1, products_names[i], rng.choice(_CATEGORIES), rng.randint(3, 250), rng.randint(0, 90))
                for i in range(20)]
    orders = [(i + 1, rng.randint(1, 30), rng.randint(1, 20), rng.randint(1, 10), rng.randint(2015, 2024))
              for i in range(60)]
    return {"customers": customers, "products": products, "orders": orders}


def _school_rows(rng: random.Random) -> dict[str, list[tuple]]:
    names = _person_names(rng, 30)
    students = [(i + 1, names[i], rng.choice(_MAJORS), rng.randint(17, 35), rng.randint(150, 200)) for i in range(30)]
    titles = rng.sample([f"{a} {b}" for a in _COURSE_WORDS[0] for b in _COURSE_WORDS[1]], 12)
    courses = [(i + 1, titles[i], rng.choice(_DEPARTMENTS), rng.randint(1, 6), rng.randint(10, 120)) for i in range(12)]
    enrollments = [(i + 1, rng.randint(1, 30), rng.randint(1, 12), rng.randint(40, 100)) for i in range(70)]
    return {"students": students, "courses": courses, "enrollments": enrollments}


@dataclass(frozen=True)
class _Db:
    db_id: str
    tables: tuple[_Table, ...]
    relations: tuple[_Relation, ...]

    def table(self, name: str) -> _Table:
        return next(t for t in self.tables if t.name == name)

    def col_id(self, table: str, col: str) -> int:
        """Index into tables.json column_names, where 0 is '*'."""
        i = 1
        for t in self.tables:
            for c in t.cols:
                if (t.name, c.name) == (table, col):
                    return i
                i += 1
        raise KeyError(f"{table}.{col} not in {self.db_id}")

    def table_id(self, table: str) -> int:
        return [t.name for t in self.tables].index(table)


_DBS = (_Db("demo_shop", _SHOP_TABLES, _SHOP_RELATIONS), _Db("demo_school", _SCHOOL_TABLES, _SCHOOL_RELATIONS))
_DB_ROWS: dict[str, Callable[[random.Random], dict[str, list[tuple]]]] = {
    "demo_shop": _shop_rows, "demo_school": _school_rows,
}


def _tables_json_entry(db: _Db) -> dict:
    """A tables.json schema with the release's keys, in the release's key order."""
    column_names: list = [[-1, "*"]]
    column_names_original: list = [[-1, "*"]]
    column_types = ["text"]
    primary_keys, foreign_keys = [], []
    for ti, t in enumerate(db.tables):
        for c in t.cols:
            column_names.append([ti, c.nl])
            column_names_original.append([ti, c.name])
            column_types.append(c.type)
        primary_keys.append(db.col_id(t.name, t.cols[0].name))
    for r in db.relations:
        foreign_keys.append([db.col_id(r.child, r.fk), db.col_id(r.parent, r.fk)])
    return {
        "column_names": column_names,
        "column_names_original": column_names_original,
        "column_types": column_types,
        "db_id": db.db_id,
        "foreign_keys": foreign_keys,
        "primary_keys": primary_keys,
        "table_names": [t.name for t in db.tables],
        "table_names_original": [t.name for t in db.tables],
    }


def _create_table_sql(db: _Db, t: _Table) -> str:
    """DDL in the style of the release's databases (quoted names, int/text, PRIMARY/FOREIGN KEY)."""
    lines = [f'"{c.name}" {"int" if c.type == "number" else "text"},' for c in t.cols]
    keys = [f'PRIMARY KEY ("{t.cols[0].name}")']
    keys += [f'FOREIGN KEY ("{r.fk}") REFERENCES "{r.parent}"("{r.fk}")' for r in db.relations if r.child == t.name]
    return f'CREATE TABLE "{t.name}" (\n' + "\n".join(lines) + "\n" + ",\n".join(keys) + "\n)"


def _write_sqlite(path: Path, db: _Db, rows: dict[str, list[tuple]]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    conn = sqlite3.connect(path)
    try:
        for t in db.tables:
            conn.execute(_create_table_sql(db, t))
            marks = ", ".join("?" for _ in t.cols)
            conn.executemany(f'INSERT INTO "{t.name}" VALUES ({marks})', rows[t.name])
        conn.commit()
    finally:
        conn.close()
    return sum(len(r) for r in rows.values())


@dataclass(frozen=True)
class _Query:
    """The structure of one templated query, rendered both to SQL text and to Spider's parsed `sql`."""

    tables: tuple[str, ...]  # joined left to right, aliased T1, T2, ... when more than one
    select: tuple[tuple[str, str, str], ...]  # (agg, table, column); column "*" for count(*)
    join_on: tuple[tuple[str, str, str, str], ...] = ()  # (left table, left col, right table, right col)
    where: tuple[tuple[str, str, str, object], ...] = ()  # (table, column, op, value), joined by AND
    group_by: tuple[str, str] | None = None
    having_count_gt: int | None = None
    order_by: tuple[str, str, str] | None = None  # (table, column, "asc" | "desc")
    limit: int | None = None
    distinct: bool = False

    def _ref(self, table: str, col: str) -> str:
        if col == "*" or len(self.tables) == 1:
            return col
        return f"T{self.tables.index(table) + 1}.{col}"

    def sql_text(self) -> str:
        """SQL spaced like the release: ' ,  ' between items and '  =  ' around comparisons."""
        items = []
        for agg, table, col in self.select:
            ref = self._ref(table, col)
            items.append(ref if agg == "none" else f"{agg}({ref})")
        parts = ["SELECT" + (" DISTINCT" if self.distinct else ""), " ,  ".join(items), "FROM"]
        if len(self.tables) == 1:
            parts.append(self.tables[0])
        else:
            parts.append(f"{self.tables[0]} AS T1")
            for i, (lt, lc, rt, rc) in enumerate(self.join_on):
                parts.append(f"JOIN {self.tables[i + 1]} AS T{i + 2} ON {self._ref(lt, lc)}  =  {self._ref(rt, rc)}")
        for i, (table, col, op, value) in enumerate(self.where):
            literal = f"'{value}'" if isinstance(value, str) else str(value)
            parts.append(f"{'AND' if i else 'WHERE'} {self._ref(table, col)}  {op}  {literal}")
        if self.group_by is not None:
            parts.append(f"GROUP BY {self._ref(*self.group_by)}")
        if self.having_count_gt is not None:
            parts.append(f"HAVING count(*)  >  {self.having_count_gt}")
        if self.order_by is not None:
            table, col, direction = self.order_by
            parts.append(f"ORDER BY {self._ref(table, col)}" + (" DESC" if direction == "desc" else ""))
        if self.limit is not None:
            parts.append(f"LIMIT {self.limit}")
        return " ".join(parts)

    def sql_parsed(self, db: _Db) -> dict:
        """Spider's parsed form: col_unit [agg, col_id, distinct], val_unit [op, col_unit, None], ..."""

        def col_unit(table: str, col: str, agg: str = "none") -> list:
            return [_AGG_IDS[agg], 0 if col == "*" else db.col_id(table, col), False]

        def val_unit(table: str, col: str) -> list:
            return [0, col_unit(table, col), None]

        conds: list = []
        for lt, lc, rt, rc in self.join_on:
            if conds:
                conds.append("and")
            conds.append([False, _WHERE_OP_IDS["="], val_unit(lt, lc), col_unit(rt, rc), None])
        where: list = []
        for table, col, op, value in self.where:
            if where:
                where.append("and")
            val = f'"{value}"' if isinstance(value, str) else float(value)
            where.append([False, _WHERE_OP_IDS[op], val_unit(table, col), val, None])
        having = []
        if self.having_count_gt is not None:
            having = [[False, _WHERE_OP_IDS[">"], [0, col_unit("", "*", "count"), None], float(self.having_count_gt), None]]
        order_by: list = []
        if self.order_by is not None:
            table, col, direction = self.order_by
            order_by = [direction, [val_unit(table, col)]]
        return {
            "from": {"table_units": [["table_unit", db.table_id(t)] for t in self.tables], "conds": conds},
            "select": [self.distinct, [[_AGG_IDS[agg], val_unit(t, c)] for agg, t, c in self.select]],
            "where": where,
            "groupBy": [col_unit(*self.group_by)] if self.group_by is not None else [],
            "having": having,
            "orderBy": order_by,
            "limit": self.limit,
            "intersect": None,
            "union": None,
            "except": None,
        }


_SQL_TOKEN = re.compile(r"'[^']*'|\w+(?:\.\w+)?|[(),*]|[<>=!]+")
_QUESTION_TOKEN = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")


def _query_toks(sql: str) -> tuple[list[str], list[str]]:
    """(query_toks, query_toks_no_value) as the release writes them: 'Paris' -> "'Paris", "'"; values -> value."""
    toks: list[str] = []
    no_value: list[str] = []
    for tok in _SQL_TOKEN.findall(sql):
        if tok.startswith("'"):
            toks += [tok[:-1], "'"]
            no_value.append("value")
        elif tok.isdigit():
            toks.append(tok)
            no_value.append("value")
        else:
            toks.append(tok)
            for i, piece in enumerate(tok.lower().split(".")):
                no_value += ["."] if i else []
                no_value.append(piece)
    return toks, no_value


@dataclass(frozen=True)
class _SpiderDraw:
    """One table of a database and the columns and values a question template may use."""

    t: _Table
    tc: _Col  # a text column with a filter phrase
    nc: _Col  # a numeric column to aggregate
    v_text: str  # a value of tc
    label: _Col  # the column "names of ..." questions list
    rng: random.Random

    @property
    def eq(self) -> str:
        return self.tc.eq.format(v=self.v_text)

    @property
    def labels(self) -> str:
        return f"{self.label.nl}s"


def _sp_count(d: _SpiderDraw) -> tuple[str, _Query]:
    q = d.rng.choice([f"How many {d.t.plural} are there?", f"Count the number of {d.t.plural}."])
    return q, _Query((d.t.name,), (("count", d.t.name, "*"),))


def _sp_count_eq(d: _SpiderDraw) -> tuple[str, _Query]:
    q = d.rng.choice([f"How many {d.t.plural} are {d.eq}?", f"Count the {d.t.plural} {d.eq}."])
    return q, _Query((d.t.name,), (("count", d.t.name, "*"),), where=((d.t.name, d.tc.name, "=", d.v_text),))


def _sp_names_eq(d: _SpiderDraw) -> tuple[str, _Query]:
    q = d.rng.choice([f"What are the {d.labels} of {d.t.plural} {d.eq}?", f"List the {d.labels} of all {d.t.plural} {d.eq}."])
    return q, _Query((d.t.name,), (("none", d.t.name, d.label.name),), where=((d.t.name, d.tc.name, "=", d.v_text),))


def _sp_agg(d: _SpiderDraw) -> tuple[str, _Query]:
    agg = d.rng.choice(list(_AGG_WORDS))
    return f"What is the {_AGG_WORDS[agg]} {d.nc.nl} of all {d.t.plural}?", _Query((d.t.name,), ((agg, d.t.name, d.nc.name),))


def _sp_agg_eq(d: _SpiderDraw) -> tuple[str, _Query]:
    agg = d.rng.choice(["avg", "max", "min"])
    q = f"What is the {_AGG_WORDS[agg]} {d.nc.nl} of {d.t.plural} {d.eq}?"
    return q, _Query((d.t.name,), ((agg, d.t.name, d.nc.name),), where=((d.t.name, d.tc.name, "=", d.v_text),))


# Single-table templates whose slots (table, column, aggregate, text value) each come from a closed
# list and are named by a word of the question: short gold queries a tiny model can learn to write.
# (The release's joins, HAVING, set operations and numeric comparisons are left out.)
SPIDER_TEMPLATES: tuple[Callable[[_SpiderDraw], tuple[str, _Query]], ...] = (
    _sp_count, _sp_count_eq, _sp_names_eq, _sp_agg, _sp_agg_eq,
)


def _spider_question(rng: random.Random, db: _Db, rows: dict[str, list[tuple]]) -> tuple[str, _Query]:
    """A (question, query) pair from a random template of SPIDER_TEMPLATES over `db`; values from its rows."""
    t = rng.choice([t for t in db.tables if t.label])

    def values(col: _Col) -> list:
        j = [c.name for c in t.cols].index(col.name)
        return sorted({r[j] for r in rows[t.name]})

    tc = rng.choice([c for c in t.cols if c.eq])
    nc = rng.choice([c for c in t.cols[1:] if c.aggregate])
    draw = _SpiderDraw(t, tc, nc, rng.choice(values(tc)),
                       next(c for c in t.cols if c.name == t.label), rng)
    return rng.choice(SPIDER_TEMPLATES)(draw)


def _spider_record(db: _Db, question: str, query: _Query) -> dict:
    sql = query.sql_text()
    toks, no_value = _query_toks(sql)
    return {
        "db_id": db.db_id,
        "query": sql,
        "query_toks": toks,
        "query_toks_no_value": no_value,
        "question": question,
        "question_toks": _QUESTION_TOKEN.findall(question),
        "sql": query.sql_parsed(db),
    }


def _returns_rows(conn: sqlite3.Connection, sql: str) -> bool:
    """True when some row holds a value other than NULL or 0: not avg() over nothing, not a zero count.

    Gold results that any empty or wrong filter would also produce make execution accuracy meaningless.
    """
    result = conn.execute(sql).fetchall()
    return any(v is not None and v != 0 for row in result for v in row)


def _spider_shape(item: tuple[str, dict]) -> tuple:
    """The template of a drawn (question, record): its select aggregates and whether it filters."""
    sql = item[1]["sql"]
    return tuple(agg for agg, _ in sql["select"][1]), bool(sql["where"])


def _write_spider(out: Path, rng: random.Random, n_dev: int, n_train: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    spider = out / "spider"
    conns: dict[str, sqlite3.Connection] = {}
    db_rows: dict[str, dict[str, list[tuple]]] = {}
    for db in _DBS:
        db_rows[db.db_id] = _DB_ROWS[db.db_id](rng)
        path = spider / "database" / db.db_id / f"{db.db_id}.sqlite"
        counts[f"spider/database/{db.db_id}/{db.db_id}.sqlite"] = _write_sqlite(path, db, db_rows[db.db_id])
        conns[db.db_id] = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        def draw() -> tuple[str, str, _Query, _Db]:
            db = rng.choice(_DBS)
            q, query = _spider_question(rng, db, db_rows[db.db_id])
            return q, db.db_id, query, db

        def valid_draw() -> tuple[str, dict]:
            # Only queries whose result has a value other than NULL or 0 (see _returns_rows).
            for _ in range(_MAX_DRAWS_PER_ITEM):
                q, db_id, query, db = draw()
                if _returns_rows(conns[db_id], query.sql_text()):
                    return q, _spider_record(db, q, query)
            raise ValueError("spider templates keep drawing queries without rows")

        dev, train = _draw_held_out_first(valid_draw, _spider_shape, n_dev, n_train, "spider", rng)
        records = [r for _, r in dev + train]
    finally:
        for conn in conns.values():
            conn.close()
    # Same serialisation as the release: dev.json with indent 4, tables.json with indent 3, no final newline.
    (spider / "dev.json").write_text(json.dumps(records[:n_dev], indent=4), encoding="utf-8")
    (spider / "train_spider.json").write_text(json.dumps(records[n_dev:], indent=4), encoding="utf-8")
    (spider / "tables.json").write_text(json.dumps([_tables_json_entry(db) for db in _DBS], indent=3), encoding="utf-8")
    counts["spider/dev.json"] = n_dev
    counts["spider/train_spider.json"] = n_train
    counts["spider/tables.json"] = len(_DBS)
    return counts


# ----------------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------------


def _held_out_keys(out: Path) -> set[str]:
    """The input of every evaluation item just written (GSM8K test, Spider dev, NL-RX validation and
    test, Django dev and test), which the text corpus must never contain; training items it may."""
    keys = {json.loads(line)["question"]
            for line in (out / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()}
    keys.update(r["question"] for r in json.loads((out / "spider" / "dev.json").read_text(encoding="utf-8")))
    nlrx = (out / "nlrx" / "synth_src.txt").read_text(encoding="utf-8").split("\n")
    split = nlrx_split_indices(len(nlrx))
    keys.update(nlrx[i] for name in ("validation", "test") for i in split[name])
    django = (out / "django" / "all.anno").read_text(encoding="utf-8").splitlines()
    keys.update(line.strip() for line in django[django_split_bounds(len(django))[0].stop:])
    return keys


def generate_all(out_dir: str | Path, seed: int = 0, scale: float = 1.0) -> dict[str, int]:
    """Write every synthetic dataset under out_dir; return {relative file path: record count}.

    Counts are lines for text files, records for JSON files, schemas for tables.json and rows for the
    SQLite files. Each dataset has its own random stream (seeded from `seed` and its name), so changing
    one generator does not change the others' files.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def stream(name: str) -> random.Random:
        return random.Random(f"dllm-jepa-synthetic/{seed}/{name}")

    counts: dict[str, int] = {}
    n_train, n_test = _write_gsm8k(out, stream("gsm8k"), _scaled("gsm8k_train", scale), _scaled("gsm8k_test", scale))
    counts["gsm8k/train.jsonl"], counts["gsm8k/test.jsonl"] = n_train, n_test
    counts.update(_write_spider(out, stream("spider"), _scaled("spider_dev", scale), _scaled("spider_train", scale)))
    n = _write_nlrx(out, stream("nlrx"), _scaled("nlrx", scale))
    counts["nlrx/synth_src.txt"] = counts["nlrx/synth_targ.txt"] = n
    n = _write_django(out, stream("django"), _scaled("django", scale))
    counts["django/all.anno"] = counts["django/all.code"] = n
    n_train, n_valid = _write_text(
        out, stream("text"), _scaled("text_train", scale), _scaled("text_valid", scale), _held_out_keys(out)
    )
    counts["text/train.txt"], counts["text/valid.txt"] = n_train, n_valid
    _write_readme(out, seed, scale, counts)
    return counts


def _write_readme(out: Path, seed: int, scale: float, counts: dict[str, int]) -> None:
    table = "\n".join(f"| `{path}` | {n} |" for path, n in sorted(counts.items()))
    n_django = counts["django/all.code"]
    train, dev, test = django_split_bounds(n_django)
    text = f"""# Synthetic task data (not the real datasets)

Generated by `dllm_jepa_train.toy.synthetic.generate_all(out_dir, seed={seed}, scale={scale})`
(`python -m dllm_jepa_train.toy.synthetic --out DIR --seed {seed} --scale {scale}`). Every file is drawn from
templates; the layout, file formats and record keys match the real GSM8K, Spider, NL-RX-Synth and
Django releases so the same loaders read both. Numbers from this data say nothing about the paper.

| file | records |
|---|---|
{table}

- Spider databases: `demo_shop` (customers, products, orders) and `demo_school` (students, courses,
  enrollments). Every gold query returns a row with a value other than NULL or 0.
- NL-RX: use a seeded 65/10/25% split of the lines, as the real data's 6,500/1,000/2,500.
- Django: split by line order, proportional to the real 16000/17000 of 18805 bounds:
  train {train.start}-{train.stop - 1}, dev {dev.start}-{dev.stop - 1}, test {test.start}-{test.stop - 1}
  (`django_split_bounds`).
- `text/`: one document per line, stand-in for Wikitext; drawn from fresh samples of the same templates,
  excluding every held-out (test, dev) task item; train and valid share no line.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def main(argv: Iterable[str] | None = None) -> None:
    """Command line: python -m dllm_jepa_train.toy.synthetic --out DIR [--seed 0] [--scale 1.0]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every dataset size")
    args = parser.parse_args(None if argv is None else list(argv))
    counts = generate_all(args.out, seed=args.seed, scale=args.scale)
    for path, n in counts.items():
        print(f"{path}\t{n}")


if __name__ == "__main__":
    main()
