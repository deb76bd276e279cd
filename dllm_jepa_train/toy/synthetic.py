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

Deviations from the real data, all deliberate:
- Spider `sql` holds the parsed form for the generated templates (the same nested lists as the real
  release), computed from the query structure rather than by Spider's own parser.
- Spider `train_spider.json` uses the same two databases as `dev.json`; questions never repeat across
  the two files.
- The text corpus is drawn from fresh random streams of the same generators and excludes every item
  that appears in a task file, so pre-training on it does not leak task test examples.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from lm_eval_diffusion.task_data import DJANGO_NUM_LINES, django_split_range

# Sizes at scale 1.0, and the floors that keep scale=0.1 usable for fast tests.
DEFAULT_SIZES: dict[str, int] = {
    "gsm8k_train": 2000,
    "gsm8k_test": 200,
    "spider_dev": 300,
    "spider_train": 1000,
    "nlrx": 3000,
    "django": 3000,
    "text_train": 3000,
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
# GSM8K: arithmetic word problems with <<expr=value>> calculator annotations, ending in "#### N".

_PEOPLE = [
    ("Natalia", "she"), ("Weng", "she"), ("Betty", "she"), ("Julie", "she"), ("Maria", "she"),
    ("Aisha", "she"), ("Emma", "she"), ("Lucy", "she"), ("Nina", "she"), ("Priya", "she"),
    ("James", "he"), ("Tom", "he"), ("Carlos", "he"), ("Ken", "he"), ("Omar", "he"),
    ("Liam", "he"), ("Mark", "he"), ("Raj", "he"), ("Sam", "he"), ("Felix", "he"),
]
_THINGS = [
    "marbles", "stickers", "apples", "pencils", "cookies", "books", "cards", "shells", "toy cars",
    "balloons", "oranges", "stamps", "crayons", "erasers", "candies",
]
_GOODS = ["cups of lemonade", "cupcakes", "bracelets", "candles", "paintings", "bags of popcorn", "scarves"]
_FOODS = ["muffins", "cookies", "brownies", "rolls", "cupcakes", "tarts"]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MULTIPLES = [(2, "twice"), (3, "three times"), (4, "four times")]


def _calc(a: int, op: str, b: int, money: bool = False) -> tuple[str, int]:
    """'a op b = <<a op b=c>>c' in GSM8K's annotation style, and c; division must be exact."""
    if op == "+":
        c = a + b
    elif op == "-":
        c = a - b
    elif op == "*":
        c = a * b
    elif op == "/":
        assert a % b == 0, (a, b)
        c = a // b
    else:
        raise ValueError(f"unknown operator {op!r}; allowed + - * /")
    dollar = "$" if money else ""
    return f"{a} {op} {b} = {dollar}<<{a}{op}{b}={c}>>{c}", c


def _gsm8k_problem(rng: random.Random) -> tuple[str, str]:
    """One (question, answer) from a random template (1 to 3 calculation steps)."""
    name, he = rng.choice(_PEOPLE)
    his = "her" if he == "she" else "his"
    friend = rng.choice([p for p, _ in _PEOPLE if p != name])
    things = rng.choice(_THINGS)
    kind = rng.randrange(13)
    if kind == 0:
        a, p = rng.randint(2, 12), rng.randint(2, 15)
        s, c = _calc(a, "*", p, money=True)
        q = f"{name} buys {a} {things} for ${p} each. How much money does {he} spend?"
        lines = [f"{name} spends {s}."]
    elif kind == 1:
        a = rng.randint(10, 90)
        b = rng.randint(1, a - 1)
        s, c = _calc(a, "-", b)
        q = (f"{name} has {a} {things}. {he.capitalize()} gives {b} of them to {friend}. "
             f"How many {things} does {name} have left?")
        lines = [f"{name} has {s} {things} left."]
    elif kind == 2:
        a = rng.randint(10, 60)
        b = rng.randint(1, a - 1)
        d = rng.randint(2, 30)
        s1, r = _calc(a, "-", b)
        s2, c = _calc(r, "+", d)
        q = (f"{name} has {a} {things}. {he.capitalize()} gives {b} to {friend} and then buys {d} more. "
             f"How many {things} does {he} have now?")
        lines = [f"After giving some away, {name} has {s1} {things}.", f"After buying more, {he} has {s2} {things}."]
    elif kind == 3:
        k, share = rng.randint(2, 9), rng.randint(2, 12)
        s, c = _calc(k * share, "/", k)
        q = (f"{name} has {k * share} {things} and shares them equally among {k} friends. "
             f"How many {things} does each friend get?")
        lines = [f"Each friend gets {s} {things}."]
    elif kind == 4:
        goods = rng.choice(_GOODS)
        a, p = rng.randint(5, 30), rng.randint(2, 9)
        cost = rng.randint(1, a * p - 1)
        s1, revenue = _calc(a, "*", p, money=True)
        s2, c = _calc(revenue, "-", cost, money=True)
        q = (f"{name} sells {a} {goods} for ${p} each. {he.capitalize()} spent ${cost} on supplies. "
             f"How much profit does {he} make?")
        lines = [f"{name} earns {s1} from the sales.", f"{his.capitalize()} profit is {s2}."]
    elif kind == 5:
        day1, day2 = rng.sample(_DAYS, 2)
        m, word = rng.choice(_MULTIPLES)
        a = rng.randint(3, 25)
        s1, b = _calc(a, "*", m)
        s2, c = _calc(a, "+", b)
        q = (f"{name} collected {a} {things} on {day1} and {word} as many on {day2}. "
             f"How many {things} did {he} collect in total?")
        lines = [f"On {day2} {he} collected {s1} {things}.", f"In total {he} collected {s2} {things}."]
    elif kind == 6:
        b, d = rng.randint(5, 20), rng.randint(2, 7)
        pages = b * d + rng.randint(1, 120)
        s1, read = _calc(b, "*", d)
        s2, c = _calc(pages, "-", read)
        q = f"A book has {pages} pages. {name} reads {b} pages every day for {d} days. How many pages are left to read?"
        lines = [f"{name} reads {s1} pages.", f"There are {s2} pages left."]
    elif kind == 7:
        start, a, w = rng.randint(5, 100), rng.randint(2, 20), rng.randint(2, 12)
        s1, saved = _calc(a, "*", w, money=True)
        s2, c = _calc(start, "+", saved, money=True)
        q = (f"{name} has ${start} saved. {he.capitalize()} saves ${a} every week. "
             f"How much money will {he} have after {w} weeks?")
        lines = [f"In {w} weeks {he} saves {s1}.", f"{he.capitalize()} will have {s2}."]
    elif kind == 8:
        food = rng.choice(_FOODS)
        trays, per_tray, boxes = rng.randint(2, 6), rng.randint(6, 12), rng.randint(2, 6)
        total = trays * per_tray
        eaten = total % boxes + boxes * rng.randint(0, 1)
        if eaten == 0 or eaten >= total:
            eaten = boxes
        s1, _ = _calc(trays, "*", per_tray)
        s2, rest = _calc(total, "-", eaten)
        s3, c = _calc(rest, "/", boxes)
        q = (f"{name} bakes {trays} trays of {per_tray} {food}. {he.capitalize()} eats {eaten} of them and puts the rest "
             f"equally into {boxes} boxes. How many {food} are in each box?")
        lines = [f"{name} bakes {s1} {food}.", f"After eating some, {s2} {food} are left.", f"Each box has {s3} {food}."]
    elif kind == 9:
        a, more = rng.randint(3, 40), rng.randint(1, 20)
        s1, b = _calc(a, "+", more)
        s2, c = _calc(a, "+", b)
        q = (f"{name} has {a} {things}. {friend} has {more} more {things} than {name}. "
             f"How many {things} do they have together?")
        lines = [f"{friend} has {s1} {things}.", f"Together they have {s2} {things}."]
    elif kind == 10:
        a, p = rng.randint(2, 8), rng.randint(1, 9)
        bill = rng.choice([b for b in (10, 20, 50, 100) if b > a * p])
        s1, cost = _calc(a, "*", p, money=True)
        s2, c = _calc(bill, "-", cost, money=True)
        q = f"{name} buys {a} {things} at ${p} each and pays with a ${bill} bill. How much change does {he} get?"
        lines = [f"The {things} cost {s1}.", f"{he.capitalize()} gets {s2} in change."]
    elif kind == 11:
        a, found = 2 * rng.randint(3, 30), rng.randint(1, 15)
        s1, half = _calc(a, "/", 2)
        s2, c = _calc(half, "+", found)
        q = (f"{name} had {a} {things}. {he.capitalize()} lost half of them, then found {found} more. "
             f"How many {things} does {he} have now?")
        lines = [f"After losing half, {he} has {s1} {things}.", f"Now {he} has {s2} {things}."]
    else:
        groups, size, extra = rng.randint(2, 9), rng.randint(3, 12), rng.randint(1, 9)
        s1, kids = _calc(groups, "*", size)
        s2, c = _calc(kids, "+", extra)
        q = (f"On a class trip there are {groups} groups of {size} students and {extra} teachers. "
             f"How many people go on the trip?")
        lines = [f"There are {s1} students.", f"With the teachers, {s2} people go on the trip."]
    return q, "\n".join(lines) + f"\n#### {c}"


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
# The release's longest description has 23 words and its longest regex 59 characters.
NLRX_MAX_WORDS = 22
NLRX_MAX_REGEX_CHARS = 56
# The release names its strings in this order within a description: 'dog' first, then 'truck', ...
_RX_WORDS = ["dog", "truck", "ring", "lake"]


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


def _rx_words(a: _Rx, form: str = "with") -> _Rx:
    """form: 'with', 'contain' (words that contain), 'only' (words that contain only), 'dont' (don't have)."""
    if form == "with":
        return _Rx(f"words with {a.nl}", f"\\b{a.rx}\\b")
    if form == "contain":
        return _Rx(f"words that contain {a.nl}", f"\\b.*{a.rx}.*\\b")
    if form == "only":
        return _Rx(f"words that contain only {a.nl}", f"\\b{a.rx}\\b")
    if form == "dont":
        return _Rx(f"words that don't have {_drop_either(a.nl)}", f"\\b~({a.rx})\\b")
    raise ValueError(f"unknown words form {form!r}; allowed with, contain, only, dont")


def _rx_lines(node: _Rx, verb: str = "with") -> tuple[str, str]:
    """The full 'lines ...' line. The release picks the word after 'lines' from how the description
    begins; `verb` ('with', 'having' or 'containing') is used only where it has the choice."""
    modifiers = ("containing ", "starting with ", "ending with ")
    if node.nl.startswith(modifiers):
        return f"lines {node.nl}", node.rx
    if node.nl.startswith("words "):
        return f"lines with {node.nl}", node.rx
    if node.nl.startswith("not "):
        rest = node.nl[len("not "):]
        return f"lines not {'' if rest.startswith(modifiers + ('words ',)) else 'having '}{rest}", node.rx
    if verb == "containing":
        return f"lines containing {node.nl}", f".*{node.rx}.*"
    if verb not in ("with", "having"):
        raise ValueError(f"unknown verb {verb!r}; allowed with, having, containing")
    return f"lines {verb} {node.nl}", node.rx


def _rx_lines_not_all(terms: list[_Rx]) -> tuple[str, str]:
    """The release's 'lines not having A, not B, and not C', which it writes as ~((A)&(B)&(C))."""
    negs = [f"not {t.nl}" for t in terms[1:]]
    tail = f" and {negs[0]}" if len(negs) == 1 else f", {', '.join(negs[:-1])}, and {negs[-1]}"
    return f"lines not having {terms[0].nl}{tail}", f"~({_rx_and(*terms).rx})"


def _rx_lines_only(a: _Rx) -> tuple[str, str]:
    """'lines containing only A' is the bare regex of A."""
    return f"lines containing only {a.nl}", a.rx


class _RxSampler:
    """Draws one description/regex pair; the string terminals are numbered per description."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.num_words = 0

    def term(self) -> _Rx:
        if self.num_words < len(_RX_WORDS) and self.rng.random() < 0.3:
            word = _RX_WORDS[self.num_words]
            self.num_words += 1
            return _Rx(f"the string '{word}'", word)
        nl, rx = self.rng.choice(_RX_CLASSES)
        return _Rx(nl, rx)

    def distinct_terms(self, k: int) -> list[_Rx]:
        terms: list[_Rx] = []
        while len(terms) < k:
            t = self.term()
            if t not in terms:
                terms.append(t)
        return terms

    def expr(self, depth: int) -> _Rx:
        """A random node with at most `depth` levels of operators above the terminals."""
        if depth == 0:
            return self.term()
        op = self.rng.choices(
            ["term", "before", "or", "and", "or3", "and3", "followed", "rep", "not",
             "containing", "starting", "ending", "words"],
            weights=[3, 6, 4, 3, 3, 3, 4, 5, 1, 2, 2, 2, 1],
        )[0]
        if op == "term":
            return self.term()
        if op in ("or3", "and3", "followed"):
            terms = self.distinct_terms(2 if op == "followed" else 3)
            return {"or3": _rx_or, "and3": _rx_and, "followed": _rx_followed}[op](*terms)
        if op in ("before", "or", "and"):
            a = self.expr(depth - 1)
            b = self.expr(depth - 1)
            while op != "before" and b == a:  # "A or A" says nothing
                b = self.term()
            return {"before": _rx_before, "or": _rx_or, "and": _rx_and}[op](a, b)
        a = self.expr(depth - 1)
        if op == "rep":
            if a.nl.endswith((" times", " at least once")):
                a = self.term()  # the release never repeats a repetition directly
            how = self.rng.choice(["+", "*", "n", "n"])
            return _rx_repeat(a, self.rng.randint(2, 7) if how == "n" else how)
        if op == "not":
            return _rx_not(self.term() if a.nl.startswith("not ") else a)
        if op == "words":
            return _rx_words(a, self.rng.choice(["with", "with", "contain", "only", "dont"]))
        return {"containing": _rx_containing, "starting": _rx_starting, "ending": _rx_ending}[op](a)

    def _line(self) -> tuple[str, str]:
        self.num_words = 0
        form = self.rng.choices(["expr", "not", "not_all", "only"], weights=[20, 3, 2, 1])[0]
        if form == "not_all":
            return _rx_lines_not_all(self.distinct_terms(self.rng.choice([2, 3])))
        if form == "only":
            a = self.term()
            return _rx_lines_only(_rx_repeat(a, self.rng.randint(2, 7)) if self.rng.random() < 0.5 else a)
        node = self.expr(self.rng.choice([1, 1, 2, 2, 3]))
        if form == "not":
            node = _rx_not(node)
        is_term = node.rx in _RX_WORDS or node.rx in dict(_RX_CLASSES).values()
        # A lone terminal is only ever phrased "lines containing A" (".*A.*") in the release.
        verb = "containing" if is_term else self.rng.choice(["with", "with", "with", "having", "containing"])
        return _rx_lines(node, verb)

    def line(self) -> tuple[str, str]:
        """A full 'lines ...' description and its regex, no longer than the release's longest."""
        for _ in range(_MAX_DRAWS_PER_ITEM):
            src, targ = self._line()
            if len(src.split()) <= NLRX_MAX_WORDS and len(targ) <= NLRX_MAX_REGEX_CHARS:
                return src, targ
        raise RuntimeError("NL-RX sampler keeps drawing over-long lines; lower the depth weights")


def _write_nlrx(out: Path, rng: random.Random, n: int) -> int:
    sampler = _RxSampler(rng)
    pairs = _draw_unique(sampler.line, n, set(), "nlrx")
    (out / "nlrx").mkdir(parents=True, exist_ok=True)
    # The release has no newline after its last line; mirrored, though the loaders read both alike.
    (out / "nlrx" / "synth_src.txt").write_text("\n".join(s for s, _ in pairs), encoding="utf-8")
    (out / "nlrx" / "synth_targ.txt").write_text("\n".join(t for _, t in pairs), encoding="utf-8")
    return n


# ----------------------------------------------------------------------------------------------------
# Django: pseudo-code annotations and space-tokenised Python lines.

_DJ_VARS = [
    "value", "result", "name", "key", "data", "items", "options", "path", "content", "field", "model",
    "request", "response", "obj", "params", "output", "line", "message", "timeout", "version", "prefix",
    "template", "context", "connection", "cursor", "form", "errors", "headers", "url", "filename",
]
_DJ_ATTRS = ["self", "opts", "settings", "instance", "handler", "parser"]
_DJ_FIELDS = ["name", "_cache", "model", "verbose_name", "default", "_meta", "encoding", "timeout", "db_table"]
_DJ_FUNCS = [
    "get_value", "parse_header", "make_key", "load_module", "force_text", "escape", "format_html",
    "get_field", "import_string", "smart_str", "get_version", "resolve", "normalize_name", "validate_key",
]
_DJ_METHODS = ["get", "pop", "copy", "update", "split", "strip", "join", "items", "keys", "encode", "lower", "render"]
_DJ_MODULES = [
    "django.conf", "django.core.cache", "django.utils.text", "django.db.models", "django.utils.encoding",
    "django.core.exceptions", "django.template.base", "django.utils.functional", "django.http.response",
]
_DJ_NAMES = [
    "settings", "signals", "ImproperlyConfigured", "force_text", "cached_property", "Template", "Field",
    "HttpResponse", "smart_str", "capfirst", "FieldDoesNotExist", "lazy",
]
_DJ_IMPORTS = ["os", "re", "sys", "warnings", "json", "datetime", "threading", "copy", "inspect"]
_DJ_CLASSES = ["CacheHandler", "BaseForm", "FieldFile", "Loader", "TemplateSyntaxError", "ModelAdmin", "Storage"]
_DJ_BASES = ["object", "Exception", "BaseCache", "Field", "ValueError"]
_DJ_EXCEPTIONS = ["ValueError", "KeyError", "TypeError", "ImproperlyConfigured", "AttributeError", "ImportError"]
_DJ_WORDS = ["default", "utf-8", "name", "id", "LOCATION", "BACKEND", "TIMEOUT", "OPTIONS", "get", "POST"]
_DJ_MESSAGES = ["invalid value", "missing key", "unknown backend", "bad template name", "no such field"]
# Leading indentation of the real code lines, roughly by frequency: mostly 1-4, then nested blocks.
_DJ_INDENTS = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 10, 10, 10, 14, 14, 14, 18, 18, 22, 26]


def _django_line(rng: random.Random) -> tuple[str, str]:
    """One (annotation, code) pair; the code is space-tokenised and carries its leading indentation."""
    v, a, b = rng.sample(_DJ_VARS, 3)
    f = rng.choice(_DJ_FUNCS)
    obj = rng.choice(_DJ_ATTRS)
    attr = rng.choice(_DJ_FIELDS)
    meth = rng.choice(_DJ_METHODS)
    word = rng.choice(_DJ_WORDS)
    n = rng.randint(0, 300)
    kind = rng.randrange(30)
    if kind == 0:
        anno, code = f"call the function {f} with an argument {a}, substitute the result for {v}.", f"{v} = {f} ( {a} )"
    elif kind == 1:
        anno = f"call the method {obj}.{meth} with arguments {a} and {b}, substitute the result for {v}."
        code = f"{v} = {obj} . {meth} ( {a} , {b} )"
    elif kind == 2:
        anno, code = f"substitute {a} for {v}.", f"{v} = {a}"
    elif kind == 3:
        anno, code = f"substitute {obj}.{attr} for {v}.", f"{v} = {obj} . {attr}"
    elif kind == 4:
        anno, code = f"{v} is an empty list.", f"{v} = [ ]"
    elif kind == 5:
        anno, code = f"{v} is an empty dictionary.", f"{v} = {{ }}"
    elif kind == 6:
        anno, code = f"{v} is integer {n}.", f"{v} = {n}"
    elif kind == 7:
        anno, code = f"{v} is a string '{word}'.", f"{v} = '{word}'"
    elif kind == 8:
        anno, code = f"return {v}.", f"return {v}"
    elif kind == 9:
        anno, code = f"if {v} is true,", f"if {v} :"
    elif kind == 10:
        anno, code = f"if {v} is false,", f"if not {v} :"
    elif kind == 11:
        anno, code = f"if {a} equals to {b},", f"if {a} == {b} :"
    elif kind == 12:
        anno, code = f"if {v} is None,", f"if {v} is None :"
    elif kind == 13:
        anno, code = f"for every {a} in {v},", f"for {a} in {v} :"
    elif kind == 14:
        anno, code = f"define the function {f} with an argument {a}.", f"def {f} ( {a} ) :"
    elif kind == 15:
        anno, code = f"define the method {f} with self and {a} as arguments.", f"def {f} ( self , {a} ) :"
    elif kind == 16:
        anno, code = f"append {a} to {v}.", f"{v} . append ( {a} )"
    elif kind == 17:
        mod, name = rng.choice(_DJ_MODULES), rng.choice(_DJ_NAMES)
        anno, code = f"from {mod} import {name} into default name space.", f"from {' . '.join(mod.split('.'))} import {name}"
    elif kind == 18:
        mod = rng.choice(_DJ_IMPORTS)
        anno, code = f"import module {mod}.", f"import {mod}"
    elif kind == 19:
        cls, base = rng.choice(_DJ_CLASSES), rng.choice(_DJ_BASES)
        anno, code = f"derive the class {cls} from the {base} base class.", f"class {cls} ( {base} ) :"
    elif kind == 20:
        anno, code = "try,", "try :"
    elif kind == 21:
        anno, code = "if not,", "else :"
    elif kind == 22:
        exc = rng.choice(_DJ_EXCEPTIONS)
        anno, code = f"if {exc} exception is caught,", f"except {exc} :"
    elif kind == 23:
        exc, msg = rng.choice(_DJ_EXCEPTIONS), rng.choice(_DJ_MESSAGES)
        anno, code = f'raise an exception {exc} with string "{msg}" as argument.', f'raise {exc} ( "{msg}" )'
    elif kind == 24:
        anno, code = f"add {a} and {b} together, substitute the result for {v}.", f"{v} = {a} + {b}"
    elif kind == 25:
        anno, code = f"substitute value under the '{word}' key of {a} dictionary for {v}.", f"{v} = {a} [ '{word}' ]"
    elif kind == 26:
        anno, code = f"get the length of {a}, substitute it for {v}.", f"{v} = len ( {a} )"
    elif kind == 27:
        anno, code = f"convert {v} into an integer.", f"{v} = int ( {v} )"
    elif kind == 28:
        anno, code = rng.choice([("skip this loop iteration,", "continue"), ("break from the loop execution,", "break")])
    else:
        anno, code = f"increment {v} by integer {n}.", f"{v} += {n}"
    return "  " + anno, " " * rng.choice(_DJ_INDENTS) + code


def _write_django(out: Path, rng: random.Random, n: int) -> int:
    # Lines repeat freely in the real file (every "try :" line); no uniqueness is asked of them either.
    pairs = [_django_line(rng) for _ in range(n)]
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
    nl_plural: str = ""  # for text filters: "cities"
    eq: str = ""  # text filter phrase with {v}, e.g. "from {v}"
    a_nl: str = ""  # for numbers: "an age"


@dataclass(frozen=True)
class _Table:
    name: str
    singular: str
    plural: str
    cols: tuple[_Col, ...]  # first column is the integer primary key
    label: str = ""  # column listed by "names of ..." questions ("" for link tables)


@dataclass(frozen=True)
class _Relation:
    """A foreign key child.fk -> parent.pk and the question phrasings over the join."""

    child: str
    fk: str
    parent: str
    count_q: str  # with {eq}
    names_q: str  # with {a_nl} and {v}
    group_q: str
    agg_col: str  # numeric child column for the aggregate-over-join template
    agg: str
    agg_q: str  # with {eq}


_SHOP_TABLES = (
    _Table("customers", "customer", "customers", (
        _Col("customer_id", "number", "customer id"),
        _Col("name", "text", "name"),
        _Col("city", "text", "city", "cities", "from {v}"),
        _Col("age", "number", "age", a_nl="an age"),
        _Col("balance", "number", "balance", a_nl="a balance"),
    ), label="name"),
    _Table("products", "product", "products", (
        _Col("product_id", "number", "product id"),
        _Col("name", "text", "name"),
        _Col("category", "text", "category", "categories", "in the {v} category"),
        _Col("price", "number", "price", a_nl="a price"),
        _Col("stock", "number", "stock", a_nl="a stock"),
    ), label="name"),
    _Table("orders", "order", "orders", (
        _Col("order_id", "number", "order id"),
        _Col("customer_id", "number", "customer id"),
        _Col("product_id", "number", "product id"),
        _Col("quantity", "number", "quantity", a_nl="a quantity"),
        _Col("order_year", "number", "order year", a_nl="an order year"),
    )),
)
_SHOP_RELATIONS = (
    _Relation("orders", "customer_id", "customers",
              "How many orders were placed by customers {eq}?",
              "What are the names of customers who placed an order with {a_nl} greater than {v}?",
              "Show the name of each customer and the number of orders they placed.",
              "quantity", "sum", "What is the total quantity of orders placed by customers {eq}?"),
    _Relation("orders", "product_id", "products",
              "How many orders were placed for products {eq}?",
              "What are the names of products that were ordered with {a_nl} greater than {v}?",
              "Show the name of each product and the number of orders for it.",
              "quantity", "avg", "What is the average quantity of orders for products {eq}?"),
)
_SCHOOL_TABLES = (
    _Table("students", "student", "students", (
        _Col("student_id", "number", "student id"),
        _Col("name", "text", "name"),
        _Col("major", "text", "major", "majors", "majoring in {v}"),
        _Col("age", "number", "age", a_nl="an age"),
        _Col("height", "number", "height", a_nl="a height"),
    ), label="name"),
    _Table("courses", "course", "courses", (
        _Col("course_id", "number", "course id"),
        _Col("title", "text", "title"),
        _Col("department", "text", "department", "departments", "in the {v} department"),
        _Col("credits", "number", "number of credits", a_nl="a number of credits"),
        _Col("capacity", "number", "capacity", a_nl="a capacity"),
    ), label="title"),
    _Table("enrollments", "enrollment", "enrollments", (
        _Col("enrollment_id", "number", "enrollment id"),
        _Col("student_id", "number", "student id"),
        _Col("course_id", "number", "course id"),
        _Col("grade", "number", "grade", a_nl="a grade"),
    )),
)
_SCHOOL_RELATIONS = (
    _Relation("enrollments", "student_id", "students",
              "How many enrollments are there for students {eq}?",
              "What are the names of students who have an enrollment with {a_nl} greater than {v}?",
              "Show the name of each student and the number of courses they are enrolled in.",
              "grade", "avg", "What is the average grade of students {eq}?"),
    _Relation("enrollments", "course_id", "courses",
              "How many enrollments are there in courses {eq}?",
              "What are the titles of courses that have an enrollment with {a_nl} greater than {v}?",
              "Show the title of each course and the number of students enrolled in it.",
              "grade", "max", "What is the highest grade in courses {eq}?"),
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


def _spider_question(rng: random.Random, db: _Db, rows: dict[str, list[tuple]]) -> tuple[str, _Query]:
    """A (question, query) pair from a random template over `db`; values are drawn from its rows."""
    labelled = [t for t in db.tables if t.label]
    t = rng.choice(labelled)
    text_cols = [c for c in t.cols if c.eq]
    num_cols = [c for c in t.cols[1:] if c.a_nl]

    def values(table: _Table, col: _Col) -> list:
        j = [c.name for c in table.cols].index(col.name)
        return sorted({r[j] for r in rows[table.name]})

    tc = rng.choice(text_cols)
    nc = rng.choice(num_cols)
    v_text = rng.choice(values(t, tc))
    num_values = values(t, nc)
    v_gt = rng.choice(num_values[:-1])
    v_lt = rng.choice(num_values[1:])
    label = next(c for c in t.cols if c.name == t.label)
    labels = f"{label.nl}s"
    eq = tc.eq.format(v=v_text)
    kind = rng.randrange(17)
    if kind == 0:
        q = rng.choice([f"How many {t.plural} are there?", f"Count the number of {t.plural}."])
        return q, _Query((t.name,), (("count", t.name, "*"),))
    if kind == 1:
        q = rng.choice([f"How many {t.plural} are {eq}?", f"Count the {t.plural} {eq}."])
        return q, _Query((t.name,), (("count", t.name, "*"),), where=((t.name, tc.name, "=", v_text),))
    if kind == 2:
        if rng.random() < 0.5:
            q = f"How many {t.plural} have {nc.a_nl} greater than {v_gt}?"
            return q, _Query((t.name,), (("count", t.name, "*"),), where=((t.name, nc.name, ">", v_gt),))
        q = f"How many {t.plural} have {nc.a_nl} less than {v_lt}?"
        return q, _Query((t.name,), (("count", t.name, "*"),), where=((t.name, nc.name, "<", v_lt),))
    if kind == 3:
        q = rng.choice([f"What are the {labels} of {t.plural} {eq}?", f"List the {labels} of all {t.plural} {eq}."])
        return q, _Query((t.name,), (("none", t.name, label.name),), where=((t.name, tc.name, "=", v_text),))
    if kind == 4:
        if rng.random() < 0.5:
            q = rng.choice([f"What are the {labels} of {t.plural} with {nc.a_nl} greater than {v_gt}?",
                            f"Which {t.plural} have {nc.a_nl} above {v_gt}? Give their {labels}."])
            return q, _Query((t.name,), (("none", t.name, label.name),), where=((t.name, nc.name, ">", v_gt),))
        q = f"What are the {labels} of {t.plural} with {nc.a_nl} less than {v_lt}?"
        return q, _Query((t.name,), (("none", t.name, label.name),), where=((t.name, nc.name, "<", v_lt),))
    if kind == 5:
        agg = rng.choice(list(_AGG_WORDS))
        q = f"What is the {_AGG_WORDS[agg]} {nc.nl} of all {t.plural}?"
        return q, _Query((t.name,), ((agg, t.name, nc.name),))
    if kind == 6:
        agg = rng.choice(["avg", "max", "min"])
        q = f"What is the {_AGG_WORDS[agg]} {nc.nl} of {t.plural} {eq}?"
        return q, _Query((t.name,), ((agg, t.name, nc.name),), where=((t.name, tc.name, "=", v_text),))
    if kind == 7:
        q = rng.choice([f"How many {t.plural} are there in each {tc.nl}?", f"Show each {tc.nl} and the number of {t.plural}."])
        return q, _Query((t.name,), (("none", t.name, tc.name), ("count", t.name, "*")), group_by=(t.name, tc.name))
    if kind == 8:
        agg = rng.choice(["avg", "max", "min"])
        q = f"What is the {_AGG_WORDS[agg]} {nc.nl} of {t.plural} for each {tc.nl}?"
        return q, _Query((t.name,), (("none", t.name, tc.name), (agg, t.name, nc.name)), group_by=(t.name, tc.name))
    if kind == 9:
        j = [c.name for c in t.cols].index(tc.name)
        counts = sorted({sum(1 for r in rows[t.name] if r[j] == v) for v in values(t, tc)})
        k = rng.choice(counts[:-1] or [0])
        q = f"Which {tc.nl_plural} have more than {k} {t.plural}?"
        return q, _Query((t.name,), (("none", t.name, tc.name),), group_by=(t.name, tc.name), having_count_gt=k)
    if kind == 10:
        direction = rng.choice(["asc", "desc"])
        extreme = "highest" if direction == "desc" else "lowest"
        k = rng.randint(1, 5)
        if k == 1:
            q = f"What is the {label.nl} of the {t.singular} with the {extreme} {nc.nl}?"
        else:
            q = f"List the {labels} of the {k} {t.plural} with the {extreme} {nc.nl}."
        return q, _Query((t.name,), (("none", t.name, label.name),), order_by=(t.name, nc.name, direction), limit=k)
    if kind == 11:
        direction = rng.choice(["asc", "desc"])
        word = "descending" if direction == "desc" else "ascending"
        q = f"List the {labels} of all {t.plural} ordered by {nc.nl} in {word} order."
        return q, _Query((t.name,), (("none", t.name, label.name),), order_by=(t.name, nc.name, direction))
    if kind == 12:
        q = f"What are the distinct {tc.nl_plural} of all {t.plural}?"
        return q, _Query((t.name,), (("none", t.name, tc.name),), distinct=True)
    if kind in (13, 14):
        op, v_num, word = rng.choice([(">", v_gt, "greater"), ("<", v_lt, "less")])
        where = ((t.name, tc.name, "=", v_text), (t.name, nc.name, op, v_num))
        if kind == 13:
            q = f"How many {t.plural} {eq} have {nc.a_nl} {word} than {v_num}?"
            return q, _Query((t.name,), (("count", t.name, "*"),), where=where)
        q = f"What are the {labels} of {t.plural} {eq} with {nc.a_nl} {word} than {v_num}?"
        return q, _Query((t.name,), (("none", t.name, label.name),), where=where)
    # Joins: parent AS T1 JOIN child AS T2 ON T1.pk = T2.fk, as the release writes most joins.
    rel = rng.choice(db.relations)
    parent, child = db.table(rel.parent), db.table(rel.child)
    on = ((parent.name, rel.fk, child.name, rel.fk),)
    p_text = next(c for c in parent.cols if c.eq)
    p_v = rng.choice(values(parent, p_text))
    p_eq = p_text.eq.format(v=p_v)
    if kind == 15:
        form = rng.choice(["count", "agg", "group"])
        if form == "count":
            q = rel.count_q.format(eq=p_eq)
            return q, _Query((parent.name, child.name), (("count", child.name, "*"),), on,
                             where=((parent.name, p_text.name, "=", p_v),))
        if form == "agg":
            q = rel.agg_q.format(eq=p_eq)
            return q, _Query((parent.name, child.name), ((rel.agg, child.name, rel.agg_col),), on,
                             where=((parent.name, p_text.name, "=", p_v),))
        q = rel.group_q
        return q, _Query((parent.name, child.name), (("none", parent.name, parent.label), ("count", child.name, "*")),
                         on, group_by=(parent.name, rel.fk))
    c_num = next(c for c in child.cols if c.name == rel.agg_col)
    c_v = rng.choice(values(child, c_num)[:-1])
    q = rel.names_q.format(a_nl=c_num.a_nl, v=c_v)
    return q, _Query((parent.name, child.name), (("none", parent.name, parent.label),), on,
                     where=((child.name, c_num.name, ">", c_v),), distinct=True)


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

        taken: set[str] = set()
        records: list[dict] = []
        for _ in range((n_dev + n_train) * _MAX_DRAWS_PER_ITEM):
            if len(records) == n_dev + n_train:
                break
            q, db_id, query, db = draw()
            if q in taken or not _returns_rows(conns[db_id], query.sql_text()):
                continue
            taken.add(q)
            records.append(_spider_record(db, q, query))
        if len(records) < n_dev + n_train:
            raise ValueError(f"only {len(records)} unique spider questions, {n_dev + n_train} requested; lower scale")
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


def _general_sentence(rng: random.Random) -> str:
    adj, noun, agent, verb = rng.choice(_ADJECTIVES), rng.choice(_NOUNS), rng.choice(_AGENTS), rng.choice(_VERBS)
    form = rng.randrange(4)
    if form == 0:
        return f"The {agent} {verb} the {adj} {noun} {rng.choice(_TIMES)}."
    if form == 1:
        article = "An" if adj[0] in "aeiou" else "A"
        place, when = rng.choice(_NOUNS), rng.choice(_TIMES)
        return f"{article} {adj} {noun} stands near the {place}, and many people visit it {when}."
    if form == 2:
        return f"{rng.choice(_TIMES).capitalize()}, the {agent} wrote a book about the {noun}."
    return f"The {noun} is {adj}, but the {rng.choice(_NOUNS)} beside it is {rng.choice(_ADJECTIVES)}."


def _schema_sentences(rng: random.Random, k: int) -> list[str]:
    """k distinct sentences, each describing one table of the generated databases."""
    sentences = []
    for db, t in rng.sample([(db, t) for db in _DBS for t in db.tables], k):
        cols = [c.nl for c in t.cols]
        sentences.append(f"The {db.db_id} database has a table {t.name} with columns {', '.join(cols[:-1])} and {cols[-1]}.")
    return sentences


def _write_text(out: Path, rng: random.Random, n_train: int, n_valid: int, task_keys: set[str]) -> tuple[int, int]:
    """Documents from fresh draws of every generator; no task-file item and no line appears twice."""
    rx_sampler = _RxSampler(rng)

    def fresh(draw: Callable[[], tuple[str, ...]]) -> tuple[str, ...]:
        for _ in range(_MAX_DRAWS_PER_ITEM):
            item = draw()
            if item[0] not in task_keys:
                return item
        raise ValueError("text corpus: templates exhausted by the task files; lower scale")

    def spider_pair() -> tuple[str, str]:
        db = rng.choice(_DBS)
        q, query = _spider_question(rng, db, spider_rows[db.db_id])
        return q, query.sql_text()

    def document() -> str:
        kind = rng.choices(["gsm8k", "nlrx", "django", "spider", "schema", "general"], weights=[5, 3, 3, 3, 1, 5])[0]
        if kind == "gsm8k":
            parts = [" ".join(fresh(lambda: _gsm8k_problem(rng))) for _ in range(rng.randint(1, 2))]
        elif kind == "nlrx":
            parts = [" ".join(fresh(rx_sampler.line)) for _ in range(rng.randint(2, 4))]
        elif kind == "django":
            parts = [" ".join(s.strip() for s in fresh(lambda: _django_line(rng))) for _ in range(rng.randint(3, 6))]
        elif kind == "spider":
            parts = [" ".join(fresh(spider_pair)) for _ in range(rng.randint(1, 3))]
        elif kind == "schema":
            parts = _schema_sentences(rng, rng.randint(2, 4))
        else:
            parts = [_general_sentence(rng) for _ in range(rng.randint(2, 5))]
        return " ".join(parts).replace("\n", " ")

    # Rows only for choosing filter values; the text stream does not consume the task files' randomness.
    row_rng = random.Random(rng.random())
    spider_rows = {db.db_id: _DB_ROWS[db.db_id](row_rng) for db in _DBS}
    docs = [d for (d,) in _draw_unique(lambda: (document(),), n_train + n_valid, set(), "text")]
    (out / "text").mkdir(parents=True, exist_ok=True)
    (out / "text" / "train.txt").write_text("".join(d + "\n" for d in docs[:n_train]), encoding="utf-8")
    (out / "text" / "valid.txt").write_text("".join(d + "\n" for d in docs[n_train:]), encoding="utf-8")
    return n_train, n_valid


# ----------------------------------------------------------------------------------------------------


def _task_keys(out: Path) -> set[str]:
    """The first field of every task item just written, which the text corpus must not repeat."""
    keys: set[str] = set()
    for fname in ("train.jsonl", "test.jsonl"):
        for line in (out / "gsm8k" / fname).read_text(encoding="utf-8").splitlines():
            keys.add(json.loads(line)["question"])
    keys.update((out / "nlrx" / "synth_src.txt").read_text(encoding="utf-8").split("\n"))
    keys.update((out / "django" / "all.anno").read_text(encoding="utf-8").splitlines())
    for fname in ("dev.json", "train_spider.json"):
        keys.update(r["question"] for r in json.loads((out / "spider" / fname).read_text(encoding="utf-8")))
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
        out, stream("text"), _scaled("text_train", scale), _scaled("text_valid", scale), _task_keys(out)
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
  excluding every task-file item; train and valid share no line.
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
