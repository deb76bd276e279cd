"""Spider execution match: sandboxed SQLite execution of gold and prediction, compared as the official does.

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
"""

from __future__ import annotations

import functools
import sqlite3
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lm_eval_diffusion.metrics.sql.cleaning import (
    _SELECT_START_RE,
    _SQLITE_SPACE_RE,
    PRED_CLEANINGS,
    _has_top_level_order_by,
    _official_rewrites,
    _segments,
    _without_leading_comments,
    clean_sql,
)

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
