"""Spider output cleaning: the SQL lexer, `clean_sql`, `semicolon_sql`, `PRED_CLEANINGS` and the official rewrites.

One regex splits SQL into literals, quoted identifiers, comments, `;` and plain code, so every cleaning
and rewrite touches only plain code. Which cleaning each execution-match variant uses, and how that
deviates from the official evaluation, is documented in `lm_eval_diffusion.metrics.sql.execution`.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# ----------------------------------------------------------------------------------------------------
# Lexical layer: one regex splits SQL into literals, quoted identifiers, comments, ';' and plain code,
# so every rewrite below touches only plain code.

_SEGMENT_RE = re.compile(
    r"""
      (?P<string>'(?:[^']|'')*(?:'|\Z))
    | (?P<dquoted>"(?:[^"]|"")*(?:"|\Z))
    | (?P<quoted>`(?:[^`]|``)*(?:`|\Z)|\[[^\]]*(?:\]|\Z))
    | (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
    | (?P<semicolon>;)
    | (?P<code>[^'"`\[;/-]+|[/-])
    """,
    re.VERBOSE | re.DOTALL,
)
# Language tag only when followed by a newline (or a bare `sql`), so "```SELECT 1```" keeps its SELECT.
_FENCE_RE = re.compile(r"```(?:[\w+-]*[ \t]*\r?\n|(?:sqlite|sql)\b)?(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)
_WS_RE = re.compile(r"\s+")
_SQLITE_SPACE_RE = re.compile(r"[ \t\n\r\f]+")  # what SQLite's tokenizer skips between tokens
# Where a generation stops being the query: a blank line, or a line that starts the next example.
_STOP_RE = re.compile(r"\n[ \t\r\f\v]*\n|(?:\A|(?<=\n))[ \t]*(?:Question|Database)[ \t]*:")
_DISTINCT_RE = re.compile(r"\bdistinct\b", re.IGNORECASE)
_CUR_YEAR_RE = re.compile(r"YEAR\s*\(\s*CURDATE\s*\(\s*\)\s*\)\s*", re.IGNORECASE)
_ORDER_BY_OR_PAREN_RE = re.compile(r"[()]|\border\s+by\b", re.IGNORECASE)
_SELECT_START_RE = re.compile(r"[\s(]*(?:select|with|values)\b", re.IGNORECASE)


def _segments(sql: str) -> Iterator[tuple[str, str]]:
    """(kind, text) pieces of `sql`; kinds: string, dquoted, quoted, comment, semicolon, code."""
    for m in _SEGMENT_RE.finditer(sql):
        yield m.lastgroup or "code", m.group()


def _fenced_or_whole(text: str | None, caller: str) -> str:
    """The first fenced block of a model output if it has one, else the whole output ("" for None)."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise TypeError(f"{caller} expects str or None, got {type(text).__name__}")
    fenced = _FENCE_RE.search(text)
    return text if fenced is None else fenced.group(1)


def clean_sql(text: str | None) -> str:
    """Model output -> one SQL statement (our reading of "standard Spider cleaning").

    The first fenced block if there is one; then the text up to the first `;`, blank line or line that
    starts a `Question:` / `Database:` header, whichever comes first (outside literals; a 4-shot model
    continues with the next example after a blank line, and Spider golds have no `;`); comments
    dropped, spaces collapsed outside literals.
    """
    text = _fenced_or_whole(text, "clean_sql")
    parts: list[str] = []
    code: list[str] = []
    offset = 0
    for kind, piece in _segments(text):
        if kind == "semicolon":
            break
        if kind == "code":
            # Searched in the whole text so that a header right after a literal still starts a line.
            stop = _STOP_RE.search(text, offset, offset + len(piece))
            if stop is not None:
                code.append(piece[: stop.start() - offset])
                break
        offset += len(piece)
        if kind in ("code", "comment"):
            # A comment separates tokens like whitespace; collapsing whitespace would otherwise turn
            # a `--` line comment into a comment over the rest of the query.
            code.append(" " if kind == "comment" else piece)
        else:
            # Literals keep their exact spacing: 'a  b' and 'a b' are different values.
            parts.append(_WS_RE.sub(" ", "".join(code)))
            code = []
            parts.append(piece)
    parts.append(_WS_RE.sub(" ", "".join(code)))
    return "".join(parts).strip()


def semicolon_sql(text: str | None) -> str:
    """Model output -> the text before its first `;` (A.9 taken literally: "truncate prediction at the
    first semicolon").

    Our addition, as in `clean_sql`: the first fenced block if there is one. The cut is at the first `;`
    outside `'...'`, `"..."`, `` `...` ``, `[...]` and `--` / `/* */` comments; an unterminated literal or
    comment runs to the end of the text, so no later `;` cuts. Nothing else changes: comments, line
    breaks, blank lines and any prose before the `;` stay (so a 4-shot model's query followed by a blank
    line and the next example, with no `;`, fails), and the result is stripped of surrounding whitespace.
    """
    text = _fenced_or_whole(text, "semicolon_sql")
    head = itertools.takewhile(lambda segment: segment[0] != "semicolon", _segments(text))
    return "".join(piece for _, piece in head).strip()


def _stripped(text: str | None) -> str:
    """The raw output with surrounding whitespace removed (None is empty)."""
    return (text or "").strip()


@dataclass(frozen=True)
class PredCleaning:
    """How one execution-match variant turns the model output into the statement it runs."""

    clean: Callable[[str | None], str]
    # Whether comments before the first keyword are skipped when checking that the statement is a query.
    # Off for `raw`, whose 2.0 rule (a leading comment scores "not_select") is kept so its values stay.
    skip_leading_comments: bool


PRED_CLEANINGS: dict[str, PredCleaning] = {
    "clean": PredCleaning(clean_sql, skip_leading_comments=False),  # exec_match (never has comments)
    "semicolon": PredCleaning(semicolon_sql, skip_leading_comments=True),  # exec_match_semicolon
    "raw": PredCleaning(_stripped, skip_leading_comments=False),  # exec_match_raw
}


def _without_leading_comments(sql: str) -> str:
    """`sql` from its first piece that is neither a comment nor whitespace."""
    start = 0
    for kind, piece in _segments(sql):
        if kind != "comment" and not (kind == "code" and piece.isspace()):
            break
        start += len(piece)
    return sql[start:]


def _rewrite_code(sql: str, rewrite: Callable[[str], str]) -> str:
    """Apply `rewrite` (str -> str) to plain-code segments only, leaving literals and names intact."""
    return "".join(rewrite(p) if kind == "code" else p for kind, p in _segments(sql))


def _official_rewrites(sql: str) -> str:
    """The official exec_eval rewrites: operator spacing, YEAR(CURDATE()) -> 2020, DISTINCT removed."""

    def rewrite(code: str) -> str:
        code = code.replace("> =", ">=").replace("< =", "<=").replace("! =", "!=")
        code = _CUR_YEAR_RE.sub("2020", code)
        return _DISTINCT_RE.sub("", code)

    return _rewrite_code(sql, rewrite)


def _has_top_level_order_by(sql: str) -> bool:
    """Whether `sql` has ORDER BY outside every parenthesis, string and comment."""
    depth = 0
    for kind, piece in _segments(sql):
        if kind != "code":
            continue
        for m in _ORDER_BY_OR_PAREN_RE.finditer(piece):
            token = m.group()
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
            elif depth == 0:
                return True
    return False

