"""Spider text-to-SQL metrics: output cleaning, sandboxed execution match, and exact-set match.

Pure functions over strings and SQLite files; the only dependencies are ``sqlite3``, ``sqlglot`` and
the standard library. Smallest run on a CPU::

    python -c "from lm_eval_diffusion.metrics.sql import exec_match; print(exec_match(
        'SELECT count(*) FROM singer', 'SELECT count(*) FROM singer',
        '../shared/data/spider/database/concert_singer/concert_singer.sqlite'))"

The code is split along its seams; this package re-exports the public names of all three:
- `cleaning`: the SQL lexer, `clean_sql`, `semicolon_sql`, `PRED_CLEANINGS` and the official rewrites;
- `execution`: the sandboxed execution match and its limits (its docstring lists the deviations from the
  official ``exec_eval.py``);
- `exact`: the sqlglot exact-set match (its docstring lists the deviations from ``evaluation.py``).
A limit is read where it is defined: patch `execution.RESULT_MAX_BYTES`, not this package's copy.
"""

from lm_eval_diffusion.metrics.sql.cleaning import PRED_CLEANINGS, PredCleaning, clean_sql, semicolon_sql
from lm_eval_diffusion.metrics.sql.exact import VALUE, Canon, canonical_sql, exact_match
from lm_eval_diffusion.metrics.sql.execution import (
    GOLD_CACHE_SIZE,
    LIKE_PATTERN_MAX,
    PROGRESS_EVERY,
    RESULT_COLUMNS_MAX,
    RESULT_MAX_BYTES,
    SQL_MAX_CHARS,
    VALUE_MAX_BYTES,
    ExecResult,
    exec_match,
    exec_match_all,
    exec_match_semicolon,
    read_schema,
    results_equal,
)

__all__ = [
    "GOLD_CACHE_SIZE",
    "LIKE_PATTERN_MAX",
    "PRED_CLEANINGS",
    "PROGRESS_EVERY",
    "RESULT_COLUMNS_MAX",
    "RESULT_MAX_BYTES",
    "SQL_MAX_CHARS",
    "VALUE",
    "VALUE_MAX_BYTES",
    "Canon",
    "ExecResult",
    "PredCleaning",
    "canonical_sql",
    "clean_sql",
    "exact_match",
    "exec_match",
    "exec_match_all",
    "exec_match_semicolon",
    "read_schema",
    "results_equal",
    "semicolon_sql",
]
