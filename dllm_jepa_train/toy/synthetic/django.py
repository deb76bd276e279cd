"""Django stand-in: pseudo-code annotations and space-tokenised Python lines (`django/all.anno`, `django/all.code`).

Deviations from the real data (see the package docstring for why):
- Django lines use one name per kind (variable, function, module, exception, digit); nine templates
  over sixteen variables, each phrased as the release phrases that statement.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import _draw_held_out_first, django_split_bounds

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
