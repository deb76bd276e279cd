"""Spider text-to-SQL metrics: output cleaning, sandboxed execution match, and exact-set match.

Pure functions over strings and SQLite files; the only dependencies are ``sqlite3``, ``sqlglot`` and
the standard library. Smallest run on a CPU::

    python -c "from lm_eval_diffusion.metrics.sql import exec_match; print(exec_match(
        'SELECT count(*) FROM singer', 'SELECT count(*) FROM singer',
        '../shared/data/spider/database/concert_singer/concert_singer.sqlite'))"

Execution match follows the official test-suite evaluation (taoyds/test-suite-sql-eval, ``exec_eval.py``
with its defaults ``plug_value=False, keep_distinct=False``): both queries get its ``postprocess``
(``'> ='`` -> ``'>='`` ...), its ``YEAR(CURDATE())`` -> ``2020`` rewrite and its ``remove_distinct`` (every
``DISTINCT`` keyword is dropped, including inside ``count(DISTINCT x)``), are executed with text decoded
as UTF-8 ignoring bad bytes, and are compared with ``result_eq`` semantics: rows as a multiset, row order
only when the gold has ``ORDER BY``, column order never, values compared with Python ``==`` (exact floats,
``1 == 1.0``), two empty results always equal. Deviations from the official ``exec_eval.py``:

- The gold first goes through ``clean_sql``; the prediction through one of ``PRED_CLEANINGS``:
  ``clean`` = ``clean_sql`` (fences; cut at the first ``;``, blank line or ``Question:``/``Database:``
  header; comments; whitespace), ``semicolon`` = ``semicolon_sql`` (fences; cut at the first ``;``, the
  rest kept as written: A.9's rule taken literally), ``raw`` = stripped of surrounding whitespace only
  (trailing text makes it fail). ``exec_match_all`` scores several cleanings of one prediction and runs
  each distinct statement once (``_execution_key``).
- Order matters only for a *top-level* ``ORDER BY`` in the gold (the official tests the substring
  ``'order by'`` anywhere, including subqueries and string literals).
- Only the given database is used (the official also runs every ``*.sqlite`` beside it, which matters
  only for the distilled test-suite databases, not for the plain Spider release).
- The column-permutation search is exact and deterministic (candidates pruned by per-column value
  multisets, interchangeable identical columns tried once) instead of the official 20 random sampled
  rows; it accepts exactly the pairs the official accepts.
- Predictions run in a sandbox the official lacks: read-only immutable connection, an authorizer that
  allows only reads and functions other than ``load_extension``/``printf``/``format`` and the CLI file
  functions, a time limit that interrupts SQLite (official: 60 s
  asyncio wait that cannot interrupt), at most ``max_rows`` rows, ``VALUE_MAX_BYTES`` per value,
  ``RESULT_COLUMNS_MAX`` columns, ``LIKE_PATTERN_MAX`` characters per LIKE/GLOB pattern and
  ``RESULT_MAX_BYTES`` per result. A prediction beyond any limit
  scores 0 with ``error`` set; the official would wait or run out of memory.
- A failing gold raises (the official asserts) and a missing database raises ``FileNotFoundError``
  (the official silently creates an empty database file).

Exact-set match follows the spirit of the official ``evaluation.py`` (``DISABLE_VALUE`` and
``DISABLE_DISTINCT`` both on) but is built on sqlglot's parser instead of Spider's ``process_sql``, so
it works without ``tables.json``. Each query becomes a canonical tree that is compared for equality:
select items as a multiset, FROM as the multiset of its tables and (recursively) derived tables,
WHERE and HAVING as boolean trees, GROUP BY as a multiset, ORDER BY as an ordered list of (expression,
direction), LIMIT and OFFSET as presence flags, set operations and subqueries recursively; every
literal is ignored, DISTINCT is ignored everywhere, identifiers are case-insensitive, table aliases
are resolved to table names and select aliases used in ORDER BY / HAVING to their expressions.
Deviations from the official ``evaluation.py``:

- Columns: qualified columns resolve through aliases to ``table.column``; an unqualified column resolves
  to its table when that is unambiguous: with ``schema``, the one table in scope that has the column
  (then enclosing scopes, for correlated subqueries); without it, only when the FROM clause has a single
  source. So ``SELECT T1.name FROM singer AS T1`` equals ``SELECT name FROM singer`` always, but
  ``T1.name`` vs ``name`` in a join needs ``schema``. The official always needs the schema.
- No foreign-key column merging (the official ``kmap`` from ``tables.json`` treats ``T1.id`` and
  ``T2.fk_id`` as one column).
- ``"text"`` in double quotes is a string value (as SQLite reads it when no such column exists) unless
  ``schema`` lists it as a visible column; backtick and bracket quoted names are always identifiers.
- Boolean structure is compared as a tree (n-ary AND/OR with unordered operands) rather than the
  official flat multiset of conditions plus the set of connectors; ``a = b`` equals ``b = a``, ``a > b``
  equals ``b < a``; a column on the right of a comparison is compared (the official drops it with the
  values); IN-lists of literals are one value whatever their length.
- Join conditions (``ON``/``USING``) and join kinds are ignored, as in the official, which compares
  only the multiset of FROM tables.
- HAVING is compared on its own (the official compares it only together with an identical GROUP BY
  list order), nested subqueries get the same order-insensitive comparison as the top level (the
  official compares them order-sensitively), UNION and INTERSECT operands are unordered, and
  ``UNION ALL`` equals ``UNION`` (consistent with ignoring DISTINCT).
- Constructs the official parser rejects (CTEs, CASE, casts, arithmetic on literals, window functions)
  are compared structurally instead of failing.

The prediction is cleaned with ``clean_sql``, or with ``clean=False`` (``exact_match_raw``) parsed as
written, stripped: it must then be exactly one statement (one trailing ``;`` allowed, as SQLite allows
it), so a second statement or trailing prose fails the parse and scores 0, except words that sqlglot
reads as SQL (a bare word right after a table name is that table's alias).
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp

# SQLITE_LIMIT_LENGTH: largest string/blob/record a query may build. It also bounds the functions that
# run uninterruptibly in one VM step: instr/replace/trim are O(len^2), ~0.05 s at 64 KiB, ~6 s at 1 MiB.
# Spider databases are < 1 MB in total, so no real value comes near it.
VALUE_MAX_BYTES = 1 << 16
LIKE_PATTERN_MAX = 256  # SQLITE_LIMIT_LIKE_PATTERN_LENGTH: LIKE/GLOB cost is O(len * pattern) in one step
RESULT_COLUMNS_MAX = 256  # SQLITE_LIMIT_COLUMN: bounds one row to RESULT_COLUMNS_MAX * VALUE_MAX_BYTES
RESULT_MAX_BYTES = 256 << 20  # sys.getsizeof total of fetched values before a prediction is cut off
SQL_MAX_CHARS = 1_000_000  # SQLITE_LIMIT_SQL_LENGTH: parsing is not covered by the progress handler
PROGRESS_EVERY = 1_000  # VM instructions between deadline checks; a check costs ~0.2 us
GOLD_CACHE_SIZE = 4_096  # gold results kept; Spider dev has 1,034 golds

# Functions that reach outside the database even on a read-only connection (the CLI-only ones are absent
# from the library build but are denied in case SQLite was compiled with them), plus printf/format:
# printf('%.*c', 2000000000, 'x') spins ~14 s inside one VM step, past any progress-handler deadline.
_DENIED_FUNCTIONS = frozenset(
    {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "printf", "format"}
)
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one execution-match comparison."""

    match: bool  # the prediction's result equals the gold's under Spider's result_eq semantics
    # None when both queries ran; else why the prediction scores 0: "empty", "not_select", "timeout",
    # "row_limit", "result_too_large", "too_big", "not_authorized: ...", "syntax: ...", "error: ...",
    # "python: <ExceptionType>: ..."
    error: str | None = None


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


def _execution_key(sql: str) -> tuple[str, bool]:
    """A key under which prediction statements run alike in SQLite: same rows, or both fail.

    Runs of SQLite's whitespace (space, tab, CR, LF, FF; not VT or Unicode spaces, which it rejects)
    outside literals and comments become one space, and a `;` that ends the (stripped) statement is
    dropped (Python's sqlite3 runs `X;` as `X`, but rejects `X;;`). Comments stay, since a NUL or a lone
    surrogate in one makes Python refuse the whole string. The flag keeps statements on either side of
    SQL_MAX_CHARS (SQLITE_LIMIT_SQL_LENGTH, in UTF-8 bytes) apart. A shared failure keeps the error
    label of the first spelling run.
    """
    pieces = [(kind, _SQLITE_SPACE_RE.sub(" ", p) if kind == "code" else p) for kind, p in _segments(sql)]
    if pieces and pieces[-1][0] == "semicolon":
        pieces.pop()
    too_long = len(sql.encode("utf-8", "surrogatepass")) > SQL_MAX_CHARS
    return "".join(p for _, p in pieces).strip(" "), too_long


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


# ----------------------------------------------------------------------------------------------------
# Sandboxed execution.


class _DeadlineExceeded(Exception):
    """Raised inside the comparison when the per-prediction deadline passes."""


def _authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, source: str | None) -> int:
    """SQLite authorizer: reads, recursive CTEs and ordinary functions only; everything else is denied."""
    if action not in _ALLOWED_ACTIONS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _open_sandboxed(db_path: Path, deadline: float) -> sqlite3.Connection:
    """Read-only, immutable connection with the authorizer, limits and a deadline-checking progress handler."""
    # immutable=1 skips locking and journal/WAL files entirely, so nothing is ever created beside the
    # database; mode=ro makes the pager refuse writes even if the authorizer were bypassed.
    conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, isolation_level=None)
    # Same decoding as the official evaluation: Spider has a few non-UTF-8 bytes in text columns.
    conn.text_factory = lambda raw: raw.decode("utf-8", errors="ignore")
    if hasattr(conn, "enable_load_extension"):
        conn.enable_load_extension(False)
    if hasattr(conn, "setlimit"):
        conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, VALUE_MAX_BYTES)
        conn.setlimit(sqlite3.SQLITE_LIMIT_COLUMN, RESULT_COLUMNS_MAX)
        conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, SQL_MAX_CHARS)
        conn.setlimit(sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, LIKE_PATTERN_MAX)
    else:
        warnings.warn(
            "sqlite3.Connection.setlimit needs Python >= 3.11: value-size, column and LIKE-pattern caps are "
            "off, so a prediction like randomblob(1e9) can allocate ~1 GB or run past its deadline",
            RuntimeWarning,
            stacklevel=3,
        )
    conn.set_authorizer(_authorize)
    conn.set_progress_handler(lambda: time.monotonic() > deadline, PROGRESS_EVERY)
    return conn


def _classify_sqlite_error(err: Exception, deadline: float) -> str:
    """Short error label for a failed prediction."""
    msg = str(err)[:200]
    low = msg.lower()
    if "interrupted" in low and time.monotonic() > deadline:
        return "timeout"
    if "not authorized" in low or "prohibited" in low:
        return f"not_authorized: {msg}"
    if "too big" in low or "too many columns" in low:
        return "too_big"
    if "syntax error" in low or "incomplete input" in low or "unrecognized token" in low:
        return f"syntax: {msg}"
    return f"error: {msg}"


def _execute(db_path: Path, sql: str, deadline: float, max_rows: int) -> tuple[list[tuple], str | None]:
    """Run one statement in the sandbox; (rows, None) or ([], error label). Never raises for bad SQL."""
    try:
        conn = _open_sandboxed(db_path, deadline)
    except sqlite3.Error as err:
        return [], f"error: cannot open database: {err}"
    try:
        cursor = conn.execute(sql)
        rows: list[tuple] = []
        num_bytes = 0
        # Row by row so that a handful of huge rows cannot overshoot the byte budget by a whole chunk.
        for row in cursor:
            rows.append(row)
            if len(rows) > max_rows:
                return [], "row_limit"
            num_bytes += sum(map(sys.getsizeof, row))
            if num_bytes > RESULT_MAX_BYTES:
                return [], "result_too_large"
        if time.monotonic() > deadline:
            return [], "timeout"
        return rows, None
    except (sqlite3.Error, sqlite3.Warning) as err:
        return [], _classify_sqlite_error(err, deadline)
    except (ValueError, OverflowError, MemoryError, RecursionError, TypeError) as err:
        # ValueError covers NUL characters and lone surrogates that cannot be encoded to UTF-8.
        return [], f"python: {type(err).__name__}: {str(err)[:200]}"
    finally:
        conn.close()


@functools.lru_cache(maxsize=GOLD_CACHE_SIZE)
def _gold_result(
    sql: str, db_path: str, mtime_ns: int, size: int, timeout_s: float, max_rows: int
) -> tuple[tuple[tuple, ...], bool]:
    """(rows, order_matters) of a prepared gold query; raises ValueError if the gold fails.

    `mtime_ns` and `size` are part of the cache key so an edited database is re-executed.
    """
    rows, error = _execute(Path(db_path), sql, time.monotonic() + timeout_s, max_rows)
    if error is not None:
        raise ValueError(f"gold query failed on {db_path} ({error}): {sql}")
    return tuple(rows), _has_top_level_order_by(sql)


def _value_key(value: object) -> tuple[int, object]:
    """Sort key that orders mixed SQLite values without comparing across types."""
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (3, value)


def _unordered_row(row: tuple) -> tuple:
    """A row's values in a canonical order: equal for rows that are column permutations of each other."""
    return tuple(sorted(row, key=_value_key))


def _permutation_exists(gold: Sequence[tuple], pred: Sequence[tuple], deadline: float) -> bool:
    """Whether some column permutation makes `pred` equal to `gold` as a multiset of rows."""
    num_cols = len(gold[0])
    gold_cols = list(zip(*gold))
    pred_cols = list(zip(*pred))
    gold_col_counts = [Counter(col) for col in gold_cols]
    pred_col_counts = [Counter(col) for col in pred_cols]
    # A gold column can only map to a prediction column holding the same multiset of values.
    candidates = [[j for j in range(num_cols) if pred_col_counts[j] == gold_col_counts[i]] for i in range(num_cols)]
    if any(not c for c in candidates):
        return False
    # Identical prediction columns are interchangeable: trying one of them per class is enough.
    first_index: dict[tuple, int] = {}
    col_class = [first_index.setdefault(col, j) for j, col in enumerate(pred_cols)]
    gold_rows = Counter(gold)
    visit_order = sorted(range(num_cols), key=lambda i: len(candidates[i]))
    perm = [0] * num_cols
    used: set[int] = set()

    def search(k: int) -> bool:
        if time.monotonic() > deadline:
            raise _DeadlineExceeded
        if k == num_cols:
            return Counter(zip(*(pred_cols[perm[i]] for i in range(num_cols)))) == gold_rows
        i = visit_order[k]
        tried: set[int] = set()
        for j in candidates[i]:
            if j in used or col_class[j] in tried:
                continue
            tried.add(col_class[j])
            used.add(j)
            perm[i] = j
            if search(k + 1):
                return True
            used.discard(j)
        return False

    return search(0)


def results_equal(gold: Sequence[tuple], pred: Sequence[tuple], order_matters: bool, deadline: float = float("inf")) -> bool:
    """Spider's result_eq: same rows up to a column permutation; row order only if `order_matters`."""
    if not gold and not pred:
        return True
    if len(gold) != len(pred):
        return False
    num_cols = len(gold[0])
    if len(pred[0]) != num_cols:
        return False
    gold_unordered = [_unordered_row(r) for r in gold]
    pred_unordered = [_unordered_row(r) for r in pred]
    if order_matters:
        if gold_unordered != pred_unordered:
            return False
        # Row i must equal row i under one permutation, so gold column c equals some prediction column
        # as a whole sequence: a permutation exists iff the multisets of column sequences agree.
        return Counter(zip(*gold)) == Counter(zip(*pred))
    if Counter(gold_unordered) != Counter(pred_unordered):
        return False
    if num_cols == 1:
        return True
    return _permutation_exists(gold, pred, deadline)


def _score_prediction(
    path: Path, pred_sql: str, gold_rows: Sequence[tuple], order_matters: bool, timeout_s: float, max_rows: int
) -> ExecResult:
    """Run one prepared prediction (its own deadline) and compare it with the gold's rows."""
    deadline = time.monotonic() + timeout_s
    pred_rows, error = _execute(path, pred_sql, deadline, max_rows)
    if error is not None:
        return ExecResult(False, error)
    try:
        return ExecResult(results_equal(gold_rows, pred_rows, order_matters, deadline))
    except _DeadlineExceeded:
        return ExecResult(False, "timeout")


def exec_match_all(
    pred: str | None,
    gold: str,
    db_path: str | Path,
    cleanings: Sequence[str] = tuple(PRED_CLEANINGS),
    *,
    timeout_s: float = 5.0,
    max_rows: int = 100_000,
) -> dict[str, ExecResult]:
    """Execution match of `pred` against `gold` on `db_path` under each named cleaning of `PRED_CLEANINGS`.

    Each distinct statement runs once: cleanings whose final statements (after the official rewrites)
    share an `_execution_key` share one execution and its result, each execution with its own
    `timeout_s`. So a prediction costs at most one timeout per distinct statement (at most
    `len(cleanings)`), plus the gold's first execution, which is cached across predictions.
    """
    unknown = [name for name in cleanings if name not in PRED_CLEANINGS]
    if unknown:
        raise ValueError(f"unknown cleaning(s) {unknown}; allowed: {sorted(PRED_CLEANINGS)}")
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database not found: {path}")
    gold_sql = _official_rewrites(clean_sql(gold))
    if not gold_sql:
        raise ValueError(f"gold query is empty: {gold!r}")
    stat = path.stat()
    gold_rows, order_matters = _gold_result(
        gold_sql, str(path.resolve()), stat.st_mtime_ns, stat.st_size, timeout_s, max_rows
    )

    if pred is not None and not isinstance(pred, str):
        not_text = ExecResult(False, f"python: TypeError: prediction is {type(pred).__name__}, not str")
        return {name: not_text for name in cleanings}
    executed: dict[tuple[str, bool], ExecResult] = {}
    results: dict[str, ExecResult] = {}
    for name in cleanings:
        cleaning = PRED_CLEANINGS[name]
        pred_sql = _official_rewrites(cleaning.clean(pred))
        head = _without_leading_comments(pred_sql) if cleaning.skip_leading_comments else pred_sql
        if not pred_sql:
            results[name] = ExecResult(False, "empty")
        elif _SELECT_START_RE.match(head) is None:
            results[name] = ExecResult(False, "not_select")
        else:
            key = _execution_key(pred_sql)
            if key not in executed:
                executed[key] = _score_prediction(path, pred_sql, gold_rows, order_matters, timeout_s, max_rows)
            results[name] = executed[key]
    return results


def exec_match(
    pred: str | None,
    gold: str,
    db_path: str | Path,
    *,
    timeout_s: float = 5.0,
    max_rows: int = 100_000,
    clean: bool = True,
) -> ExecResult:
    """Execution match of `pred` against `gold` on `db_path` (Spider test-suite semantics, sandboxed).

    `clean`: the prediction goes through `clean_sql` (the Table 2 metric); False runs it as written,
    surrounding whitespace stripped (the raw score: `SELECT ...; more text` is two statements and fails).
    """
    cleaning = "clean" if clean else "raw"
    return exec_match_all(pred, gold, db_path, (cleaning,), timeout_s=timeout_s, max_rows=max_rows)[cleaning]


def exec_match_semicolon(
    pred: str | None, gold: str, db_path: str | Path, *, timeout_s: float = 5.0, max_rows: int = 100_000
) -> ExecResult:
    """Execution match of the prediction cut at its first `;` (`semicolon_sql`; A.9 taken literally)."""
    return exec_match_all(pred, gold, db_path, ("semicolon",), timeout_s=timeout_s, max_rows=max_rows)["semicolon"]


def read_schema(db_path: str | Path) -> dict[str, list[str]]:
    """{table: [column, ...]} of a SQLite database, read through a read-only connection."""
    path = Path(db_path)
    if not path.is_file():
        raise FileNotFoundError(f"SQLite database not found: {path}")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
        return {t: [r[0] for r in conn.execute("SELECT name FROM pragma_table_info(?)", (t,))] for t in tables}
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------------------
# Exact-set match: sqlglot tree -> canonical nested tuples of strings, compared with ==.

VALUE = "<value>"  # every literal, and every expression built only from literals
_DERIVED = "<derived>"  # source id of a subquery in FROM (its alias is arbitrary)
_SET_OPS_UNORDERED = (exp.Union, exp.Intersect)
# sqlglot renamed these Select args ("from" -> "from_", "with" -> "with_") in later releases.
_FROM_KEY = "from_" if "from_" in exp.Select.arg_types else "from"
_WITH_KEY = "with_" if "with_" in exp.Select.arg_types else "with"
_SELECT_KEYS = frozenset(
    {"expressions", _FROM_KEY, "joins", "where", "group", "having", "order", "limit", "offset", _WITH_KEY, "distinct"}
)
_SETOP_KEYS = frozenset({"this", "expression", "order", "limit", "offset", _WITH_KEY, "distinct"})

Canon = object  # a str or a nested tuple of Canon; only == and repr are used


@dataclass
class _Scope:
    """Name resolution for one SELECT: visible source names, real tables, select aliases, CTEs."""

    sources: dict[str, str] = field(default_factory=dict)  # alias or unaliased table name -> source id
    tables: list[str] = field(default_factory=list)  # real tables in FROM, for schema lookups
    select_aliases: dict[str, exp.Expression] = field(default_factory=dict)
    ctes: dict[str, str] = field(default_factory=dict)  # CTE name -> source id (its canonical body)
    parent: _Scope | None = None

    def chain(self) -> Iterator[_Scope]:
        """This scope, then the enclosing ones."""
        scope: _Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent


@dataclass(frozen=True)
class _Ctx:
    """Per-query constants for canonicalisation."""

    schema: dict[str, frozenset[str]] | None  # lower-case table -> lower-case columns
    bracketed: frozenset[str]  # names written in backticks or brackets: identifiers, never values


def _sorted(items: list[Canon]) -> tuple:
    """Canonical multiset: items sorted by their repr."""
    return tuple(sorted(items, key=repr))


def _lookup_source(scope: _Scope, name: str) -> str | None:
    """Source id of a table name or alias, searching enclosing scopes (correlated references)."""
    for s in scope.chain():
        if name in s.sources:
            return s.sources[name]
    return None


def _lookup_cte(scope: _Scope, name: str) -> str | None:
    """Source id of a CTE visible from `scope`."""
    for s in scope.chain():
        if name in s.ctes:
            return s.ctes[name]
    return None


def _visible_column(name: str, scope: _Scope, ctx: _Ctx) -> bool:
    """Whether the schema (if any) shows `name` as a column or select alias visible from `scope`."""
    if ctx.schema is None:
        return False
    for s in scope.chain():
        if name in s.select_aliases or any(name in ctx.schema.get(t, ()) for t in s.tables):
            return True
    return False


def _resolve_unqualified(name: str, scope: _Scope, ctx: _Ctx) -> str:
    """Table of an unqualified column when unambiguous, else ''."""
    if ctx.schema is not None:
        for s in scope.chain():
            owners = {t for t in s.tables if name in ctx.schema.get(t, ())}
            if len(owners) == 1:
                return owners.pop()
            if len(owners) > 1:
                return ""
    distinct_sources = set(scope.sources.values())
    if len(distinct_sources) == 1:
        return distinct_sources.pop()
    return ""


def _canon_column(col: exp.Column, scope: _Scope, ctx: _Ctx, use_aliases: bool) -> Canon:
    """('col', table, column) with aliases resolved, or VALUE for a double-quoted string."""
    ident = col.this
    name = "*" if isinstance(ident, exp.Star) else col.name
    lname = name.lower()
    table = col.table.lower()
    if (
        not table
        and isinstance(ident, exp.Identifier)
        and ident.quoted
        and name not in ctx.bracketed
        and not _visible_column(lname, scope, ctx)
    ):
        return VALUE
    if not table and use_aliases and lname in scope.select_aliases:
        target = scope.select_aliases[lname]
        # `SELECT name AS name ... ORDER BY name` refers to the column itself, not a loop.
        if not (isinstance(target, exp.Column) and target.name.lower() == lname and not target.table):
            return _canon_expr(target, scope, ctx, use_aliases=False)
    if table:
        return ("col", _lookup_source(scope, table) or table, lname)
    return ("col", _resolve_unqualified(lname, scope, ctx), lname)


def _flatten(node: exp.Expression, cls: type) -> list[exp.Expression]:
    """Operands of a chain of `cls` (AND or OR), looking through parentheses."""
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, cls):
        return _flatten(node.this, cls) + _flatten(node.expression, cls)
    return [node]


def _canon_generic(node: exp.Expression, scope: _Scope, ctx: _Ctx, use_aliases: bool) -> Canon:
    """Class name plus canonical args; VALUE when every expression child is a value."""
    parts: list[tuple[str, Canon]] = []
    all_values = True
    for key in sorted(node.args):
        if key.startswith("_"):
            continue  # sqlglot annotations (e.g. an inferred type), not syntax
        arg = node.args[key]
        if arg is None or arg is False or (isinstance(arg, (str, list)) and not arg):
            continue
        if isinstance(arg, exp.Expression):
            c = _canon_expr(arg, scope, ctx, use_aliases)
            all_values = all_values and c == VALUE
        elif isinstance(arg, list):
            c = tuple(
                _canon_expr(a, scope, ctx, use_aliases) if isinstance(a, exp.Expression) else str(a).lower()
                for a in arg
            )
            all_values = all_values and all(x == VALUE for x in c)
        else:
            c = str(arg).lower()
        parts.append((key, c))
    if all_values:
        return VALUE
    return (type(node).__name__.lower(), tuple(parts))


def _canon_expr(node: exp.Expression, scope: _Scope, ctx: _Ctx, use_aliases: bool = False) -> Canon:
    """Canonical form of an expression inside a SELECT."""
    if isinstance(node, exp.Query):
        return ("query", _canon_query(node, ctx, scope))
    if isinstance(node, (exp.Paren, exp.Alias)):
        return _canon_expr(node.this, scope, ctx, use_aliases)
    if isinstance(node, exp.Distinct):
        items = [_canon_expr(e, scope, ctx, use_aliases) for e in node.expressions]
        return items[0] if len(items) == 1 else ("list", tuple(items))
    if isinstance(node, exp.Column):
        return _canon_column(node, scope, ctx, use_aliases)
    if isinstance(node, exp.Star):
        return ("col", "", "*")
    if isinstance(node, (exp.Literal, exp.Null, exp.Boolean, exp.Placeholder)):
        return VALUE
    if isinstance(node, exp.DataType):
        return ("type", node.sql(dialect="sqlite").lower())
    if isinstance(node, exp.Identifier):
        return ("id", node.name.lower())
    if isinstance(node, exp.Table):
        return ("table", node.name.lower())
    if isinstance(node, (exp.And, exp.Or)):
        kind = "and" if isinstance(node, exp.And) else "or"
        return (kind, _sorted([_canon_expr(e, scope, ctx, use_aliases) for e in _flatten(node, type(node))]))
    if isinstance(node, (exp.EQ, exp.NEQ)):
        kind = "eq" if isinstance(node, exp.EQ) else "neq"
        pair = [_canon_expr(node.this, scope, ctx, use_aliases), _canon_expr(node.expression, scope, ctx, use_aliases)]
        return (kind, _sorted(pair))
    if isinstance(node, (exp.LT, exp.LTE, exp.GT, exp.GTE)):
        left = _canon_expr(node.this, scope, ctx, use_aliases)
        right = _canon_expr(node.expression, scope, ctx, use_aliases)
        if isinstance(node, (exp.GT, exp.GTE)):
            left, right = right, left
        return ("lt" if isinstance(node, (exp.LT, exp.GT)) else "lte", left, right)
    if isinstance(node, exp.Ordered):
        return (_canon_expr(node.this, scope, ctx, use_aliases), "desc" if node.args.get("desc") else "asc")
    if isinstance(node, exp.In):
        target = _canon_expr(node.this, scope, ctx, use_aliases)
        if node.args.get("query") is not None:
            return ("in", target, _canon_expr(node.args["query"], scope, ctx, use_aliases))
        items = [_canon_expr(e, scope, ctx, use_aliases) for e in node.expressions]
        return ("in", target, VALUE if all(i == VALUE for i in items) else _sorted(items))
    return _canon_generic(node, scope, ctx, use_aliases)


def _with_scope(node: exp.Expression, ctx: _Ctx, parent: _Scope | None) -> _Scope | None:
    """A scope layer holding the CTEs of `node` (or `parent` itself when there are none)."""
    with_ = node.args.get(_WITH_KEY)
    if with_ is None:
        return parent
    layer = _Scope(parent=parent)
    for cte in with_.expressions:
        # Later CTEs may refer to earlier ones, so each body sees the layer built so far.
        layer.ctes[cte.alias.lower()] = "cte:" + repr(_canon_query(cte.this, ctx, layer))
    return layer


def _select_scope(select: exp.Select, ctx: _Ctx, parent: _Scope | None) -> tuple[_Scope, list[Canon]]:
    """The scope a SELECT's clauses resolve names in, and the canonical items of its FROM clause."""
    scope = _Scope(parent=parent)
    from_ = select.args.get(_FROM_KEY)
    sources = ([from_.this] if from_ is not None else []) + [j.this for j in select.args.get("joins") or []]
    from_items: list[Canon] = []
    for src in sources:
        if isinstance(src, exp.Table) and isinstance(src.this, exp.Identifier):
            name = src.name.lower()
            cte_id = _lookup_cte(scope, name)
            source_id = cte_id or name
            if cte_id is None:
                scope.tables.append(name)
            scope.sources[(src.alias or src.name).lower()] = source_id
            from_items.append(("table", source_id))
        else:
            # Derived tables cannot see their sibling sources, only the enclosing query's.
            inner = src.this if isinstance(src, exp.Subquery) else src
            canon = _canon_query(inner, ctx, parent) if isinstance(inner, exp.Query) else _canon_expr(src, scope, ctx)
            if src.alias:
                scope.sources[src.alias.lower()] = _DERIVED
            from_items.append(("derived", canon))
    for item in select.expressions:
        if isinstance(item, exp.Alias):
            scope.select_aliases[item.alias.lower()] = item.this
    return scope, from_items


def _extras(node: exp.Expression, handled: frozenset[str], scope: _Scope, ctx: _Ctx) -> tuple:
    """Canonical form of args this module does not model, so they still have to agree."""
    out = []
    for key in sorted(node.args):
        if key in handled or key.startswith("_"):
            continue
        arg = node.args[key]
        if arg is None or arg is False or (isinstance(arg, (str, list)) and not arg):
            continue
        if isinstance(arg, exp.Expression):
            out.append((key, _canon_expr(arg, scope, ctx)))
        elif isinstance(arg, list):
            out.append((key, tuple(_canon_expr(a, scope, ctx) for a in arg if isinstance(a, exp.Expression))))
        else:
            out.append((key, str(arg).lower()))
    return tuple(out)


def _canon_select(select: exp.Select, ctx: _Ctx, parent: _Scope | None) -> Canon:
    """Canonical SELECT: every clause as a multiset, boolean tree, ordered list or presence flag."""
    scope, from_items = _select_scope(select, ctx, parent)
    where = select.args.get("where")
    group = select.args.get("group")
    having = select.args.get("having")
    order = select.args.get("order")
    return (
        "select",
        _sorted([_canon_expr(e, scope, ctx) for e in select.expressions]),
        _sorted(from_items),
        _canon_expr(where.this, scope, ctx) if where is not None else None,
        _sorted([_canon_expr(e, scope, ctx) for e in group.expressions]) if group is not None else (),
        _canon_expr(having.this, scope, ctx, use_aliases=True) if having is not None else None,
        tuple(_canon_expr(o, scope, ctx, use_aliases=True) for o in order.expressions) if order is not None else (),
        select.args.get("limit") is not None,
        select.args.get("offset") is not None,
        _extras(select, _SELECT_KEYS, scope, ctx),
    )


def _leftmost_select(node: exp.Expression) -> exp.Select | None:
    """First SELECT of a set operation, whose output names the set operation's ORDER BY uses."""
    while isinstance(node, (exp.SetOperation, exp.Subquery)):
        node = node.this
    return node if isinstance(node, exp.Select) else None


def _set_operands(node: exp.SetOperation) -> list[exp.Expression]:
    """Operands of a chain of the same unordered set operation without its own ORDER BY/LIMIT."""
    out = []
    for side in (node.this, node.expression):
        same_kind = type(side) is type(node)
        plain = not any(side.args.get(k) is not None for k in ("order", "limit", "offset", _WITH_KEY))
        out.extend(_set_operands(side) if same_kind and plain else [side])
    return out


def _canon_query(node: exp.Expression, ctx: _Ctx, parent: _Scope | None) -> Canon:
    """Canonical form of a SELECT, set operation or subquery."""
    while isinstance(node, exp.Subquery) and isinstance(node.this, exp.Query):
        node = node.this
    scope = _with_scope(node, ctx, parent)
    if isinstance(node, exp.Select):
        return _canon_select(node, ctx, scope)
    if isinstance(node, exp.SetOperation):
        kind = type(node).__name__.lower()
        if isinstance(node, _SET_OPS_UNORDERED):
            operands: tuple = _sorted([_canon_query(o, ctx, scope) for o in _set_operands(node)])
        else:
            operands = (_canon_query(node.this, ctx, scope), _canon_query(node.expression, ctx, scope))
        leftmost = _leftmost_select(node)
        order_scope = _select_scope(leftmost, ctx, scope)[0] if leftmost is not None else _Scope(parent=scope)
        order = node.args.get("order")
        return (
            kind,
            operands,
            tuple(_canon_expr(o, order_scope, ctx, use_aliases=True) for o in order.expressions) if order else (),
            node.args.get("limit") is not None,
            node.args.get("offset") is not None,
            _extras(node, _SETOP_KEYS, order_scope, ctx),
        )
    return _canon_expr(node, scope or _Scope(), ctx)


def canonical_sql(sql: str, schema: Mapping[str, Sequence[str]] | None = None, *, clean: bool = True) -> Canon:
    """Value-free canonical form used by exact_match; raises sqlglot errors on unparsable SQL.

    `clean`: parse `clean_sql(sql)`; False parses `sql` as written (stripped), which must be exactly one
    statement (ValueError otherwise; one trailing `;` is part of it).
    """
    text = clean_sql(sql) if clean else sql.strip()
    if not text:
        raise ValueError("empty SQL")
    bracketed = frozenset(piece[1:-1] for kind, piece in _segments(text) if kind == "quoted")
    lowered = None if schema is None else {t.lower(): frozenset(c.lower() for c in cols) for t, cols in schema.items()}
    if clean:
        tree = sqlglot.parse_one(text, read="sqlite")
    else:
        # parse_one would wrap `SELECT 1; SELECT 2` in a Block; `SELECT 1;;` parses to [Select, None].
        trees = sqlglot.parse(text, read="sqlite")
        if len(trees) != 1 or trees[0] is None:
            raise ValueError(f"expected one SQL statement, parsed {len(trees)}")
        tree = trees[0]
    return _canon_query(tree, _Ctx(schema=lowered, bracketed=bracketed), None)


def exact_match(
    pred: str | None, gold: str, schema: Mapping[str, Sequence[str]] | None = None, *, clean: bool = True
) -> bool:
    """Spider-style exact-set match, values and DISTINCT ignored; False for any unparsable prediction.

    `clean`: the prediction goes through `clean_sql` (the gold always does); False parses it as written,
    stripped (`exact_match_raw`: trailing prose or a second statement scores 0).
    """
    try:
        gold_canon = canonical_sql(gold, schema)
    except (sqlglot.errors.SqlglotError, ValueError, RecursionError) as err:
        raise ValueError(f"gold query cannot be parsed ({type(err).__name__}: {err}): {gold!r}") from err
    if pred is None or not isinstance(pred, str):
        return False
    try:
        pred_canon = canonical_sql(pred, schema, clean=clean)
    except Exception:
        # Model output is arbitrary text and sqlglot raises more than ParseError on garbage (Tokenizer,
        # Recursion, occasionally Index/Attribute errors); every such prediction is simply wrong.
        return False
    return pred_canon == gold_canon
