"""NL-RX-Synth stand-in: descriptions and dk.brics regexes (`nlrx/synth_src.txt`, `nlrx/synth_targ.txt`).

Deviations from the real data (see the package docstring for why):
- NL-RX lines have one operator over at most one character class and one string; strings come from a
  list of twelve (the release: up to three nested operators, strings always named 'dog', 'truck', ...).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import _draw_unique

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
