"""Spider SQL metrics: clean_sql, semicolon_sql, sandboxed exec_match (and its variants), result_eq semantics,
exact_match (cleaned and raw), on the real dev set."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sqlite3
import string
import time
from collections import Counter
from pathlib import Path

import pytest

from lm_eval_diffusion.metrics import sql as sqlm
from lm_eval_diffusion.metrics.sql import execution
from lm_eval_diffusion.metrics.sql import (
    ExecResult,
    clean_sql,
    exact_match,
    exec_match,
    exec_match_all,
    exec_match_semicolon,
    read_schema,
    results_equal,
    semicolon_sql,
)

SHARED_DATA = Path(
    os.environ.get("DLLM_JEPA_SHARED_DATA", Path(__file__).resolve().parents[2].parent / "shared" / "data")
)
SPIDER = SHARED_DATA / "spider"
MISSING_DB = "wta_1"  # the one dev database absent from ../shared/data (62 questions)
NUM_DEV_WITH_DB = 972
HOSTILE_TIMEOUT_S = 1.0
# Allowance on top of the timeout: opening the database, one uninterruptible VM step, the Python loop.
TIMEOUT_MARGIN_S = 0.75
GOLD = "SELECT name FROM singer"


@pytest.fixture(scope="module")
def spider() -> Path:
    if not (SPIDER / "dev.json").is_file():
        pytest.skip(f"Spider data not found at {SPIDER} (expected ../shared/data beside the project)")
    return SPIDER


@pytest.fixture(scope="module")
def dev_with_db(spider) -> list[tuple[str, str, Path]]:
    """(db_id, gold query, database path) for every dev question whose database is present."""
    items = []
    for ex in json.loads((spider / "dev.json").read_text()):
        db = spider / "database" / ex["db_id"] / f"{ex['db_id']}.sqlite"
        if ex["db_id"] == MISSING_DB:
            assert not db.exists()
            continue
        items.append((ex["db_id"], ex["query"], db))
    return items


@pytest.fixture(scope="module")
def concert_db(spider) -> Path:
    return spider / "database" / "concert_singer" / "concert_singer.sqlite"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hash_all(root: Path) -> dict[str, str]:
    return {str(p): _sha256(p) for p in sorted(root.rglob("*.sqlite"))}


def _plain_rows(db: Path, sql: str) -> list[tuple]:
    """Rows from an ordinary read-only connection: an independent reference for preconditions."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


# --- real data: every gold matches itself ---------------------------------------------------------


def test_every_dev_gold_matches_itself(spider, dev_with_db):
    assert len(dev_with_db) == NUM_DEV_WITH_DB
    before = _hash_all(spider / "database")
    schemas = {}
    exec_failures, exact_failures = [], []
    for db_id, gold, db in dev_with_db:
        results = exec_match_all(gold, gold, db)
        if any(not r.match or r.error is not None for r in results.values()):
            exec_failures.append((db_id, gold, results))
        schema = schemas.setdefault(db_id, read_schema(db))
        # The cleaned path without a schema is checked on all 1,034 golds below; here the raw path.
        if not (exact_match(gold, gold, clean=False) and exact_match(gold, gold, schema)):
            exact_failures.append((db_id, gold))
    assert exec_failures == []
    assert exact_failures == []
    assert _hash_all(spider / "database") == before


def test_every_dev_gold_exact_matches_itself_even_without_database(spider):
    # exact_match needs no database, so the wta_1 questions are checked too.
    golds = [ex["query"] for ex in json.loads((spider / "dev.json").read_text())]
    assert len(golds) == 1034
    assert [g for g in golds if not exact_match(g, g)] == []


def test_dev_golds_survive_alias_renames_and_value_changes(dev_with_db):
    # Rewrites a model might produce: other alias names and other literal values.
    alias_failures, value_failures = [], []
    for _, gold, db in dev_with_db:
        renamed = re.sub(r"\bT(\d)\b", r"alias_\1", gold, flags=re.IGNORECASE)
        if not (exact_match(renamed, gold) and exec_match(renamed, gold, db).match):
            alias_failures.append(gold)
        revalued = re.sub(r"(?<![\w.])\d+(?![\w.])", "987", gold)
        if not exact_match(revalued, gold):
            value_failures.append(gold)
    assert alias_failures == []
    assert value_failures == []


def test_dev_golds_with_flipped_direction_do_not_exact_match(spider):
    golds = [ex["query"] for ex in json.loads((spider / "dev.json").read_text())]
    descending = [g for g in golds if re.search(r"\bdesc\b", g, re.IGNORECASE)]
    assert len(descending) > 50
    assert [g for g in descending if exact_match(re.sub(r"\bdesc\b", "ASC", g, flags=re.IGNORECASE), g)] == []


def test_gold_results_are_cached(concert_db):
    gold = "SELECT country FROM singer WHERE age > 30"
    exec_match(gold, gold, concert_db)
    hits = execution._gold_result.cache_info().hits
    assert exec_match("SELECT country FROM singer WHERE age > 31", gold, concert_db).match
    assert execution._gold_result.cache_info().hits == hits + 1


# --- execution match: equivalences and differences ------------------------------------------------


@pytest.mark.parametrize(
    "gold, pred",
    [
        # column order never matters, also when the gold is ordered
        ("SELECT name, country, age FROM singer ORDER BY age DESC", "SELECT age, name, country FROM singer ORDER BY age DESC"),
        ("SELECT country, count(*) FROM singer GROUP BY country", "SELECT count(*), country FROM singer GROUP BY country"),
        # alias renames
        (
            "SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 ON T1.singer_id = T2.singer_id",
            "SELECT b.name FROM singer_in_concert AS a JOIN singer AS b ON a.singer_id = b.singer_id",
        ),
        # whitespace, case, fences, trailing junk after ';'
        ("SELECT name FROM singer WHERE age > 30", "```sql\nselect   NAME\nfrom singer\nwhere age>30;\n```\nDone."),
        # the official remove_distinct drops DISTINCT from both queries before executing
        ("SELECT DISTINCT country FROM singer WHERE age > 20", "SELECT country FROM singer WHERE age > 20"),
        # two empty results are equal whatever their columns (official result_eq)
        ("SELECT name FROM singer WHERE age > 1000", "SELECT country, age FROM singer WHERE age < 0"),
        # recursive CTEs are allowed
        ("SELECT 1 UNION ALL SELECT 2", "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2) SELECT x FROM c"),
    ],
)
def test_exec_equivalent_rewrites_match(concert_db, gold, pred):
    assert exec_match(pred, gold, concert_db) == ExecResult(True, None)


def test_exec_row_order_ignored_without_gold_order_by(concert_db):
    gold = "SELECT name FROM singer WHERE age > 30"
    pred = "SELECT name FROM singer WHERE age > 30 ORDER BY name DESC"
    gold_rows, pred_rows = _plain_rows(concert_db, gold), _plain_rows(concert_db, pred)
    assert gold_rows != pred_rows and sorted(gold_rows) == sorted(pred_rows)  # precondition
    assert exec_match(pred, gold, concert_db).match


def test_exec_row_order_matters_with_gold_order_by(concert_db):
    gold = "SELECT name FROM singer ORDER BY age"
    for pred in ("SELECT name FROM singer", "SELECT name FROM singer ORDER BY age DESC"):
        gold_rows, pred_rows = _plain_rows(concert_db, gold), _plain_rows(concert_db, pred)
        assert len(set(gold_rows)) > 1 and gold_rows != pred_rows and sorted(gold_rows) == sorted(pred_rows)
        assert exec_match(pred, gold, concert_db) == ExecResult(False, None)


def test_exec_order_by_inside_subquery_does_not_make_order_matter(concert_db):
    gold = "SELECT name FROM singer WHERE age IN (SELECT age FROM singer ORDER BY age LIMIT 3)"
    pred = "SELECT name FROM singer WHERE age IN (SELECT age FROM singer ORDER BY age LIMIT 3) ORDER BY name DESC"
    assert _plain_rows(concert_db, gold) != _plain_rows(concert_db, pred)  # precondition
    assert exec_match(pred, gold, concert_db).match


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("SELECT name FROM singer", "SELECT country FROM singer"),
        ("SELECT name FROM singer WHERE age > 30", "SELECT name FROM singer WHERE age > 40"),
        ("SELECT name FROM singer", "SELECT name, country FROM singer"),
        ("SELECT count(*) FROM singer", "SELECT count(*) FROM singer WHERE age > 30"),
        # floats are compared exactly, as in the official evaluation
        ("SELECT avg(age) FROM singer", "SELECT avg(age) + 1e-9 FROM singer"),
        # a prediction that runs after ';' truncation but answers something else
        ("SELECT name FROM singer", "SELECT name FROM singer WHERE age > 40; SELECT name FROM singer"),
    ],
)
def test_exec_different_queries_do_not_match(concert_db, gold, pred):
    assert Counter(_plain_rows(concert_db, gold)) != Counter(_plain_rows(concert_db, clean_sql(pred)))  # precondition
    assert exec_match(pred, gold, concert_db) == ExecResult(False, None)


def test_exec_errors_are_labelled(concert_db):
    assert exec_match("SELECT nme FROM singer", GOLD, concert_db).error == "error: no such column: nme"
    assert exec_match("SELEC name FROM singer", GOLD, concert_db).error.startswith("not_select")
    assert exec_match("SELECT name FROM singer WHERE", GOLD, concert_db).error.startswith("syntax: ")
    assert exec_match("", GOLD, concert_db).error == "empty"
    assert exec_match(None, GOLD, concert_db).error == "empty"
    assert exec_match(12345, GOLD, concert_db).error.startswith("python: TypeError")  # type: ignore[arg-type]


def test_exec_dataset_problems_raise(concert_db, tmp_path):
    missing = tmp_path / "nowhere" / "missing.sqlite"
    with pytest.raises(FileNotFoundError, match="missing.sqlite"):
        exec_match(GOLD, GOLD, missing)
    assert not missing.exists()  # unlike a plain sqlite3.connect, nothing is created
    with pytest.raises(ValueError, match="gold query failed"):
        exec_match(GOLD, "SELECT no_such_column FROM singer", concert_db)
    with pytest.raises(ValueError, match="gold query is empty"):
        exec_match(GOLD, "  ;", concert_db)
    with pytest.raises(ValueError, match="timeout_s"):
        exec_match(GOLD, GOLD, concert_db, timeout_s=0)


def test_exec_works_on_paths_that_need_uri_escaping(concert_db, tmp_path):
    odd = tmp_path / "we?ird #dir %20" / "db.sqlite"
    odd.parent.mkdir()
    shutil.copy(concert_db, odd)
    assert exec_match("SELECT name FROM singer ORDER BY name", GOLD, odd).match
    assert read_schema(odd)["singer"][:2] == ["Singer_ID", "Name"]


def test_exec_row_limit(concert_db):
    gold = "SELECT a.name FROM singer AS a, singer AS b"  # 36 rows
    assert exec_match(gold, gold, concert_db, max_rows=36).match
    result = exec_match("SELECT a.name FROM singer AS a, singer AS b, singer AS c", GOLD, concert_db, max_rows=36)
    assert result == ExecResult(False, "row_limit")


# --- result_eq semantics, hand-checked --------------------------------------------------------------


@pytest.mark.parametrize(
    "gold, pred, order_matters, expected",
    [
        ([], [], True, True),
        ([], [(1,)], False, False),
        ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], False, True),
        ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True, False),
        ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
        # same column multisets, different row pairing
        ([(1, "a"), (2, "b")], [(1, "b"), (2, "a")], False, False),
        ([(1, 1), (2, 2)], [(1, 2), (2, 1)], False, False),
        # bag semantics: duplicates count
        ([(1,), (1,), (2,)], [(1,), (2,), (2,)], False, False),
        ([(1,), (1,), (2,)], [(2,), (1,), (1,)], False, True),
        # Python equality, as in the official script: 1 == 1.0, but 1 != '1'
        ([(1,)], [(1.0,)], False, True),
        ([(1,)], [("1",)], False, False),
        # NULLs and mixed types sort without crashing
        ([(None, "x", 1.5), (2, None, b"z")], [(b"z", 2, None), (1.5, None, "x")], False, True),
        ([(None, "x", 1.5), (2, None, b"z")], [(b"z", 2, None), (1.5, "x", None)], False, False),
        # permutation needs backtracking: columns 1 and 2 have equal multisets
        ([(1, 2, 3), (1, 3, 2), (4, 2, 2)], [(3, 2, 1), (2, 3, 1), (2, 2, 4)], False, True),
        ([(1, 2, 3), (1, 3, 2), (4, 2, 2)], [(3, 2, 1), (3, 2, 1), (2, 2, 4)], False, False),
        ([(1, 2)], [(1, 2, 3)], False, False),
    ],
)
def test_results_equal_hand_checked(gold, pred, order_matters, expected):
    assert results_equal(gold, pred, order_matters) is expected


def test_results_equal_many_identical_columns_is_fast():
    row = tuple([7] * 12)
    start = time.monotonic()
    assert results_equal([row] * 50, [row] * 50, False)
    assert not results_equal([row] * 50, [row] * 49 + [tuple([7] * 11 + [8])], False)
    assert time.monotonic() - start < 1.0


# --- hostile predictions ----------------------------------------------------------------------------

_CROSS7 = ", ".join(f"singer AS s{i}" for i in range(7))
_CROSS12 = ", ".join(f"singer AS s{i}" for i in range(12))
_GARBAGE = "".join(random.Random(0).choice(string.printable) for _ in range(100_000))

# (prediction, acceptable error prefixes; () means it may run but must not match)
HOSTILE = [
    ("DROP TABLE singer", ("not_select",)),
    ("DELETE FROM singer", ("not_select",)),
    ("INSERT INTO singer (name) VALUES ('x')", ("not_select",)),
    ("UPDATE singer SET name = 'x'", ("not_select",)),
    ("ATTACH DATABASE '/tmp/x.db' AS x", ("not_select",)),
    ("PRAGMA writable_schema=1", ("not_select",)),
    ("CREATE TABLE t(x)", ("not_select",)),
    ("BEGIN", ("not_select",)),
    # statement-type checks alone would let these through: the authorizer must stop them
    ("WITH x AS (SELECT 1) DELETE FROM singer", ("not_authorized",)),
    ("WITH x AS (SELECT 1) INSERT INTO singer (name) SELECT 'x'", ("not_authorized",)),
    ("SELECT load_extension('x')", ("not_authorized",)),
    ("SELECT * FROM pragma_table_info('singer')", ("not_authorized",)),
    ("SELECT printf('%.*c', 2000000000, 'x')", ("not_authorized",)),
    ("SELECT 1; DROP TABLE singer", ()),
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c", ("row_limit", "timeout")),
    ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT count(*) FROM c", ("timeout",)),
    ("SELECT * FROM singer, singer, singer, singer, singer, singer, singer", ("error: ambiguous",)),
    (f"SELECT * FROM {_CROSS7}", ("row_limit", "timeout")),
    (f"SELECT count(*) FROM {_CROSS12}", ("timeout",)),
    (f"SELECT s0.name FROM {_CROSS12} ORDER BY random()", ("timeout",)),
    ("SELECT randomblob(1000000000)", ("too_big",)),
    ("SELECT zeroblob(2000000000)", ("too_big",)),
    ("SELECT length(group_concat(hex(zeroblob(30000)))) FROM singer", ("too_big",)),
    # each value fits, the result does not (256 MiB of blobs; a loaded machine may hit the deadline first)
    (f"SELECT zeroblob(60000) FROM {_CROSS7}", ("result_too_large", "timeout")),
    (_GARBAGE, ("not_select", "syntax", "error", "python")),
    ("SELECT ☃ FROM 𝔰𝔦𝔫𝔤𝔢𝔯 WHERE x = '\ud800'", ("python: UnicodeEncodeError",)),
    ("SELECT name FROM singer WHERE name = '\x00'", ("error", "python")),
    ("SELECT " + "(" * 5000 + "1" + ")" * 5000, ("error", "syntax")),
    ("", ("empty",)),
    ("\n ; DROP TABLE singer", ("empty",)),
]


@pytest.fixture()
def sandbox_copy(concert_db, tmp_path) -> Path:
    copy = tmp_path / "db" / "concert_singer.sqlite"
    copy.parent.mkdir()
    shutil.copy(concert_db, copy)
    return copy


def test_hash_check_detects_a_modified_database(sandbox_copy):
    # Guards the hostile test below: an unprotected connection does change the file and its hash.
    before = _sha256(sandbox_copy)
    conn = sqlite3.connect(sandbox_copy)
    conn.execute("DROP TABLE singer_in_concert")
    conn.commit()
    conn.close()
    assert _sha256(sandbox_copy) != before


@pytest.mark.parametrize("pred, errors", HOSTILE, ids=[f"{i:02d}:{p[:40]!r}" for i, (p, _) in enumerate(HOSTILE)])
def test_hostile_prediction_scores_zero_fast_and_leaves_databases_intact(spider, sandbox_copy, pred, errors):
    shared_before = _hash_all(spider / "database")
    copy_before = _sha256(sandbox_copy)
    for db in (sandbox_copy, spider / "database" / "concert_singer" / "concert_singer.sqlite"):
        start = time.monotonic()
        results = exec_match_all(pred, GOLD, db, timeout_s=HOSTILE_TIMEOUT_S)
        elapsed = time.monotonic() - start
        assert [r.match for r in results.values()] == [False] * 3, results
        if errors:
            for name in ("clean", "semicolon"):
                error = results[name].error
                assert error is not None and error.startswith(errors), (name, error)
            assert results["raw"].error is not None
        # Within one timeout although three cleanings are scored: a runaway's three statements coincide.
        assert elapsed < HOSTILE_TIMEOUT_S + TIMEOUT_MARGIN_S, (elapsed, results)
    assert _sha256(sandbox_copy) == copy_before
    assert sorted(p.name for p in sandbox_copy.parent.iterdir()) == [sandbox_copy.name]  # no journal, no WAL
    assert _hash_all(spider / "database") == shared_before
    start = time.monotonic()
    assert exact_match(pred, GOLD) is False
    assert exact_match(pred, GOLD, clean=False) is False
    assert time.monotonic() - start < 2.0


def test_statements_that_write_elsewhere_create_nothing(sandbox_copy, tmp_path):
    target = tmp_path / "written.db"
    for pred in (
        f"ATTACH DATABASE '{target}' AS x",
        f"VACUUM INTO '{target}'",
        f"SELECT 1 FROM singer WHERE 1 = 0 UNION SELECT 2; ATTACH DATABASE '{target}' AS x",
    ):
        result = exec_match(pred, GOLD, sandbox_copy, timeout_s=HOSTILE_TIMEOUT_S)
        assert not result.match
        assert not target.exists()


def test_result_byte_budget(concert_db, monkeypatch):
    monkeypatch.setattr(execution, "RESULT_MAX_BYTES", 1 << 20)
    result = exec_match("SELECT zeroblob(60000) FROM singer AS a, singer AS b", GOLD, concert_db)  # 2.2 MB
    assert result == ExecResult(False, "result_too_large")
    assert exec_match("SELECT zeroblob(60000) FROM singer AS a, singer AS b LIMIT 10", GOLD, concert_db).error is None


def test_database_still_usable_after_hostile_predictions(sandbox_copy):
    for pred, _ in HOSTILE[:10]:
        exec_match(pred, GOLD, sandbox_copy, timeout_s=HOSTILE_TIMEOUT_S)
    assert len(_plain_rows(sandbox_copy, "SELECT * FROM singer")) == 6
    assert exec_match("SELECT name FROM singer", GOLD, sandbox_copy).match


# --- clean_sql -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("```sql\nSELECT 1\n```", "SELECT 1"),
        ("Here you go:\n```sqlite\nSELECT a\nFROM t;\n```\nHope it helps", "SELECT a FROM t"),
        ("```\nSELECT a FROM t\n```", "SELECT a FROM t"),
        ("```SELECT a FROM t```", "SELECT a FROM t"),
        ("```sql SELECT a FROM t```", "SELECT a FROM t"),
        ("```sql\nSELECT a FROM t", "SELECT a FROM t"),  # unclosed fence
        ("SELECT 1; DROP TABLE t", "SELECT 1"),
        ("SELECT a FROM t; -- explanation follows\nThis query selects a.", "SELECT a FROM t"),
        ("  SELECT  a ,\n\tb\r\n FROM   t  ", "SELECT a , b FROM t"),
        ("SELECT a FROM t WHERE x = 'a;  b'; junk", "SELECT a FROM t WHERE x = 'a;  b'"),
        ("SELECT a FROM t WHERE x = 'it''s; ok'", "SELECT a FROM t WHERE x = 'it''s; ok'"),
        ('SELECT "a;b" FROM t;', 'SELECT "a;b" FROM t'),
        ("SELECT a -- the a column\nFROM t", "SELECT a FROM t"),
        ("SELECT /* not; here */ a FROM t", "SELECT a FROM t"),
        ("SELECT a - b / 2 FROM t", "SELECT a - b / 2 FROM t"),
        ("", ""),
        (None, ""),
        ("   \n ; SELECT 1", ""),
        # A blank line or the next example's header ends the query, whichever comes first.
        ("SELECT a FROM t\n\nDatabase: x\nQuestion: y", "SELECT a FROM t"),
        ("SELECT a\nFROM t\n \t \nmore text; SELECT 2", "SELECT a FROM t"),
        ("SELECT a FROM t\nQuestion: how many?\nSQL: SELECT 2", "SELECT a FROM t"),
        ("SELECT a FROM t\n  Database: db", "SELECT a FROM t"),
        ("SELECT a FROM t; x\n\ny", "SELECT a FROM t"),
        ("SELECT 'Question: x' FROM t", "SELECT 'Question: x' FROM t"),  # inside a literal: content
        ("SELECT 'a\n\nb' FROM t\n\nQuestion: q", "SELECT 'a\n\nb' FROM t"),
        ("SELECT 'a'\nDatabase: z", "SELECT 'a'"),  # a header right after a literal
        ("SELECT a -- note\n\nQuestion: q", "SELECT a"),
        ("SELECT a FROM t WHERE q = 'x' AND Question: 1", "SELECT a FROM t WHERE q = 'x' AND Question: 1"),
        ("```sql\nSELECT 1\n\nSELECT 2\n```", "SELECT 1"),
        ("Question: q\nSELECT 1", ""),
    ],
)
def test_clean_sql(text, expected):
    assert clean_sql(text) == expected


def test_exec_match_raw_runs_the_output_as_written(concert_db):
    gold = "SELECT count(*) FROM singer"
    assert exec_match("  " + gold + "\n", gold, concert_db, clean=False) == ExecResult(True, None)
    assert exec_match(gold + ";", gold, concert_db, clean=False).match  # SQLite accepts one trailing ';'
    for tail in ("; DROP TABLE x", ";\nThis query counts the singers.", "\n\nDatabase: x\nQuestion: y"):
        assert exec_match(gold + tail, gold, concert_db).match
        raw = exec_match(gold + tail, gold, concert_db, clean=False)
        assert not raw.match and raw.error is not None, (tail, raw)


def test_clean_sql_rejects_non_strings():
    with pytest.raises(TypeError, match="bytes"):
        clean_sql(b"SELECT 1")  # type: ignore[arg-type]


# --- semicolon_sql and exec_match_semicolon (A.9: "truncate prediction at the first semicolon") -------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("SELECT a FROM t; DROP TABLE t", "SELECT a FROM t"),
        ("SELECT a FROM t;", "SELECT a FROM t"),
        # nothing but the cut: line breaks and inner spaces stay as written, then the ends are stripped
        ("  SELECT a\n  FROM t ;\nThis query selects a.", "SELECT a\n  FROM t"),
        # a `;` inside a literal, a quoted name or a comment does not cut
        ("SELECT a FROM t WHERE x = 'a; b'; junk", "SELECT a FROM t WHERE x = 'a; b'"),
        ("SELECT a FROM t WHERE x = 'it''s; ok'; junk", "SELECT a FROM t WHERE x = 'it''s; ok'"),
        ('SELECT "a;b" FROM t; junk', 'SELECT "a;b" FROM t'),
        ("SELECT `a;b` FROM t; junk", "SELECT `a;b` FROM t"),
        ("SELECT [a;b] FROM t; junk", "SELECT [a;b] FROM t"),
        ("SELECT a -- not; here\nFROM t; junk", "SELECT a -- not; here\nFROM t"),
        ("SELECT a /* not; here */ FROM t; junk", "SELECT a /* not; here */ FROM t"),
        ("SELECT a - b / 2 FROM t; junk", "SELECT a - b / 2 FROM t"),
        # an unterminated literal or comment runs to the end: no later `;` cuts
        ("SELECT a FROM t WHERE x = 'abc; DROP TABLE t", "SELECT a FROM t WHERE x = 'abc; DROP TABLE t"),
        ('SELECT "a; b FROM t', 'SELECT "a; b FROM t'),
        ("SELECT [a; b FROM t", "SELECT [a; b FROM t"),
        ("SELECT a FROM t /* note; more", "SELECT a FROM t /* note; more"),
        ("SELECT a FROM t -- last line; no newline", "SELECT a FROM t -- last line; no newline"),
        # no other cut: a blank line and the next example stay (unlike clean_sql)
        ("SELECT a FROM t\n\nDatabase: x\nQuestion: y", "SELECT a FROM t\n\nDatabase: x\nQuestion: y"),
        ("SELECT a FROM t\n\nQuestion: q; SELECT 2", "SELECT a FROM t\n\nQuestion: q"),
        # the first fenced block first (our addition), prose after it ignored
        ("Here:\n```sql\nSELECT a\nFROM t;\n```\nThis query; selects a.", "SELECT a\nFROM t"),
        ("```sql\nSELECT a FROM t\n```\nThe answer; is above", "SELECT a FROM t"),
        ("```sql\nSELECT 'a;b' FROM t\n```\n```sql\nSELECT 2\n```", "SELECT 'a;b' FROM t"),
        ("```sql\nSELECT a FROM t", "SELECT a FROM t"),  # unclosed fence
        ("  \n ; SELECT 1", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_semicolon_sql(text, expected):
    assert semicolon_sql(text) == expected


def test_semicolon_sql_rejects_non_strings():
    with pytest.raises(TypeError, match="bytes"):
        semicolon_sql(b"SELECT 1")  # type: ignore[arg-type]


_COUNT = "SELECT count(*) FROM singer"


@pytest.mark.parametrize(
    "pred, match, error",
    [
        (_COUNT + "; DROP TABLE singer", True, None),
        ("SELECT count(*)\nFROM singer -- every row; all of them\n;\nThis counts the singers.", True, None),
        ("-- count the singers\nSELECT count(*) FROM singer;", True, None),  # SQLite skips a leading comment
        ("```sql\nSELECT count(*) FROM singer\n```\nThis query; counts them.", True, None),
        ("SELECT count(*) FROM singer WHERE name != 'a;b'; junk", True, None),
        ("SELECT count(*) FROM singer /* unterminated; comment", True, None),  # ends at the end of input
        # no `;`: the next example is part of the statement
        (_COUNT + "\n\nDatabase: x\nQuestion: y", False, "syntax"),
        ("SELECT count(*) FROM singer WHERE name = 'x; DROP TABLE singer", False, "syntax"),  # unterminated literal
        ("SELECT count(*) FROM singer WHERE age > 40; " + _COUNT, False, None),
        (" ; " + _COUNT, False, "empty"),
        ("DELETE FROM singer; " + _COUNT, False, "not_select"),
    ],
)
def test_exec_match_semicolon_hand_checked(concert_db, pred, match, error):
    assert _plain_rows(concert_db, "SELECT count(*) FROM singer WHERE age > 40") != _plain_rows(concert_db, _COUNT)
    result = exec_match_semicolon(pred, _COUNT, concert_db)
    assert result.match is match
    assert (result.error is None) if error is None else result.error.startswith(error), result.error
    assert exec_match_all(pred, _COUNT, concert_db, ("semicolon",)) == {"semicolon": result}


def test_exec_match_raw_keeps_its_leading_comment_rule(concert_db):
    # Version 2.0's exec_match_raw treats a leading comment as "not_select"; kept so its values stay.
    pred = "-- count the singers\nSELECT count(*) FROM singer"
    assert exec_match(pred, _COUNT, concert_db, clean=False) == ExecResult(False, "not_select")
    assert exec_match_semicolon(pred, _COUNT, concert_db) == ExecResult(True, None)


def test_exec_match_all_rejects_unknown_cleanings(concert_db):
    with pytest.raises(ValueError, match="allowed: \\['clean', 'raw', 'semicolon'\\]"):
        exec_match_all(_COUNT, _COUNT, concert_db, ("clean", "trimmed"))


# --- one execution per distinct statement -----------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("SELECT name\n\t FROM\r\n singer", "SELECT name FROM singer", True),
        ("SELECT name FROM singer;", "SELECT name FROM singer", True),
        ("SELECT name FROM singer\n ;", "SELECT name FROM singer", True),
        ("SELECT name FROM singer WHERE name != 'a  b'\f", "SELECT name FROM singer WHERE name != 'a  b'", True),
        # SQLite tells these apart (Python's sqlite3 rejects `;;`; VT and NBSP are no whitespace to SQLite)
        ("SELECT name FROM singer;;", "SELECT name FROM singer", False),
        ("SELECT name FROM singer; SELECT 1", "SELECT name FROM singer", False),
        ("SELECT name\vFROM singer", "SELECT name FROM singer", False),
        ("SELECT name\xa0FROM singer", "SELECT name FROM singer", False),
        ("SELECT 'a  b' FROM singer", "SELECT 'a b' FROM singer", False),
        # comments stay in the key (a NUL in one makes Python refuse the whole string)
        ("SELECT name -- c\nFROM singer", "SELECT name FROM singer", False),
    ],
)
def test_execution_key_merges_only_what_sqlite_runs_alike(concert_db, a, b, same):
    assert (execution._execution_key(a) == execution._execution_key(b)) is same

    def outcome(sql: str) -> object:
        try:
            return _plain_rows(concert_db, sql)
        except (sqlite3.Error, ValueError) as err:
            return type(err)

    if same:
        assert outcome(a) == outcome(b)
        assert isinstance(outcome(a), list)


def test_execution_key_keeps_statements_over_the_length_limit_apart():
    long = "SELECT 1" + " " * sqlm.SQL_MAX_CHARS
    assert execution._execution_key(long) != execution._execution_key("SELECT 1")
    assert execution._execution_key(long)[0] == execution._execution_key("SELECT 1")[0]


def test_each_distinct_statement_runs_once_per_prediction(concert_db, monkeypatch):
    timeout_s = 0.5
    exec_match(_COUNT, _COUNT, concert_db, timeout_s=timeout_s)  # the gold's rows are cached from here on
    ran: list[str] = []
    real_execute = execution._execute

    def counting_execute(db_path, sql, deadline, max_rows):
        ran.append(sql)
        return real_execute(db_path, sql, deadline, max_rows)

    monkeypatch.setattr(execution, "_execute", counting_execute)
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)\nSELECT count(*) FROM c;"
    cases = {  # prediction: (statements run, clean, semicolon, raw matches)
        _COUNT: (1, True, True, True),
        "SELECT count(*)\n  FROM\tsinger;": (1, True, True, True),  # three spellings, one statement
        "```sql\nSELECT count(*) FROM singer\n```": (1, True, True, False),  # raw is not_select: never run
        _COUNT + "; SELECT 2": (2, True, True, False),  # raw is two statements
        "SELECT count(*) -- all\nFROM singer;;": (3, True, True, False),  # the comment, then raw's `;;`
        runaway: (1, False, False, False),  # one timeout, not three
    }
    for pred, (num_runs, *matches) in cases.items():
        ran.clear()
        results = exec_match_all(pred, _COUNT, concert_db, ("clean", "semicolon", "raw"), timeout_s=timeout_s)
        assert len(ran) == len(set(ran)) == num_runs, (pred, ran)
        assert [r.match for r in results.values()] == matches, (pred, results)
    assert {r.error for r in results.values()} == {"timeout"}


# --- exact match, hand-checked -----------------------------------------------------------------------

EXACT_PAIRS = [
    # (gold, pred, expected)
    ("SELECT name, country FROM singer", "SELECT country, name FROM singer", True),
    ("SELECT T1.name FROM singer AS T1", "SELECT name FROM singer", True),
    ("SELECT T1.name FROM singer AS T1", "select SINGER.NAME from Singer", True),
    (
        "SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id",
        "SELECT a.name FROM singer AS a JOIN singer_in_concert AS b ON a.singer_id = b.singer_id",
        True,
    ),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age > 30", True),
    ("SELECT name FROM singer WHERE country = 'France'", 'SELECT name FROM singer WHERE country = "Spain"', True),
    ("SELECT name FROM singer WHERE age IN (1, 2, 3)", "SELECT name FROM singer WHERE age IN (5)", True),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE 20 < age", True),
    ("SELECT name FROM singer WHERE a = 1 AND b = 2", "SELECT name FROM singer WHERE b = 2 AND a = 1", True),
    ("SELECT name FROM singer WHERE a = 1 AND (b = 2 AND c = 3)", "SELECT name FROM singer WHERE c = 3 AND a = 1 AND b = 2", True),
    ("SELECT name FROM singer ORDER BY age ASC", "SELECT name FROM singer ORDER BY age", True),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "SELECT name FROM singer ORDER BY age LIMIT 3", True),
    ("SELECT DISTINCT country FROM singer", "SELECT country FROM singer", True),
    ("SELECT count(DISTINCT country) FROM singer", "SELECT count(country) FROM singer", True),
    ("SELECT country, count(*) FROM singer GROUP BY country, age", "SELECT count(*), country FROM singer GROUP BY age, country", True),
    (
        "SELECT count(*) AS c, country FROM singer GROUP BY country ORDER BY c DESC",
        "SELECT country, count(*) FROM singer GROUP BY country ORDER BY count(*) DESC",
        True,
    ),
    ("SELECT `name` FROM singer", "SELECT name FROM singer", True),
    # join conditions are ignored, as in the official evaluation; the tables are not
    (
        "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id",
        "SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.theme = T2.name",
        True,
    ),
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id", "SELECT name FROM stadium", False),
    # set operations
    (
        "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30",
        "SELECT country FROM singer WHERE age < 35 INTERSECT SELECT country FROM singer WHERE age > 45",
        True,
    ),
    (
        "SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30",
        "SELECT country FROM singer WHERE age > 40 EXCEPT SELECT country FROM singer WHERE age < 30",
        False,
    ),
    (
        "SELECT country FROM singer WHERE age > 40 EXCEPT SELECT country FROM singer WHERE age < 30",
        "SELECT country FROM singer WHERE age < 30 EXCEPT SELECT country FROM singer WHERE age > 40",
        False,
    ),
    (
        "SELECT name FROM singer UNION SELECT name FROM stadium UNION SELECT theme FROM concert",
        "SELECT theme FROM concert UNION SELECT name FROM singer UNION SELECT name FROM stadium",
        True,
    ),
    (
        "SELECT name FROM singer UNION SELECT name FROM stadium",
        "SELECT name FROM singer UNION SELECT location FROM stadium",
        False,
    ),
    # nested subqueries
    (
        "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert WHERE year = 2014)",
        "SELECT T1.name FROM stadium AS T1 WHERE T1.stadium_id NOT IN (SELECT c.stadium_id FROM concert AS c WHERE c.year = 1999)",
        True,
    ),
    (
        "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert)",
        "SELECT name FROM stadium WHERE stadium_id IN (SELECT stadium_id FROM concert)",
        False,
    ),
    (
        "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert WHERE year = 2014)",
        "SELECT name FROM stadium WHERE stadium_id NOT IN (SELECT stadium_id FROM concert WHERE theme = 2014)",
        False,
    ),
    ("SELECT song_name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "SELECT song_name FROM singer WHERE age > (SELECT max(age) FROM singer)", False),
    # plain differences
    ("SELECT name FROM singer", "SELECT country FROM singer", False),
    ("SELECT name FROM singer", "SELECT name, country FROM singer", False),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age < 20", False),
    ("SELECT name FROM singer WHERE age > 20", "SELECT name FROM singer WHERE age >= 20", False),
    ("SELECT name FROM singer WHERE a = 1 AND b = 2", "SELECT name FROM singer WHERE a = 1 OR b = 2", False),
    ("SELECT name FROM singer WHERE a = 1", "SELECT name FROM singer WHERE NOT a = 1", False),
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer", False),
    ("SELECT name FROM singer ORDER BY age", "SELECT name FROM singer ORDER BY age DESC", False),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "SELECT name FROM singer ORDER BY age", False),
    ("SELECT max(age) FROM singer", "SELECT min(age) FROM singer", False),
    ("SELECT country FROM singer GROUP BY country", "SELECT country FROM singer", False),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1", "SELECT country FROM singer GROUP BY country", False),
    ("SELECT name FROM singer", "SELECT name FROM singer AS a JOIN singer AS b", False),
    # unparsable or empty predictions
    ("SELECT name FROM singer", "SELECT name FROM (((", False),
    ("SELECT name FROM singer", "", False),
    ("SELECT name FROM singer", None, False),
]


@pytest.mark.parametrize("gold, pred, expected", EXACT_PAIRS)
def test_exact_match_hand_checked(gold, pred, expected):
    assert exact_match(pred, gold) is expected


@pytest.mark.parametrize(
    "pred, cleaned, raw",
    [
        (_COUNT, True, True),
        ("  " + _COUNT + " \n", True, True),
        ("select COUNT(*)\nfrom Singer", True, True),
        (_COUNT + ";", True, True),  # one statement with its terminator, as SQLite runs it
        ("SELECT count(*) -- every row; all of them\nFROM singer", True, True),  # a comment is SQL
        (_COUNT + ";;", True, False),
        (_COUNT + "; DROP TABLE singer", True, False),
        (_COUNT + ";\nThis query counts the singers.", True, False),
        (_COUNT + "\n\nDatabase: x\nQuestion: y", True, False),
        ("```sql\n" + _COUNT + "\n```", True, False),
        (_COUNT + " WHERE name = 'a;b", False, False),  # unterminated literal
        ("Answer: " + _COUNT, False, False),
        # documented leniency of parsing as written: a bare word after a table name is its alias
        (_COUNT + "\nDone", True, True),
        ("", False, False),
        (None, False, False),
    ],
)
def test_exact_match_raw_parses_the_output_as_written(pred, cleaned, raw):
    assert exact_match(pred, _COUNT) is cleaned
    assert exact_match(pred, _COUNT, clean=False) is raw


def test_canonical_sql_raw_needs_exactly_one_statement():
    with pytest.raises(ValueError, match="one SQL statement"):
        sqlm.canonical_sql(_COUNT + "; SELECT 1", clean=False)
    with pytest.raises(ValueError, match="empty SQL"):
        sqlm.canonical_sql("  \n", clean=False)


def test_exact_match_schema_resolves_unqualified_columns_in_joins(concert_db):
    gold = "SELECT T2.concert_name FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id = T2.concert_id"
    pred = "SELECT concert_name FROM singer_in_concert JOIN concert ON singer_in_concert.concert_id = concert.concert_id"
    schema = read_schema(concert_db)
    assert exact_match(pred, gold, schema)
    # Without a schema the owner of an unqualified column in a join is unknown (documented).
    assert not exact_match(pred, gold)
    # A double-quoted name is a string value unless the schema shows a column of that name.
    assert exact_match('SELECT "name" FROM singer', "SELECT name FROM singer", schema)
    assert not exact_match('SELECT "name" FROM singer', "SELECT name FROM singer")
    wrong_table = pred.replace("concert_name", "theme")
    assert not exact_match(wrong_table, gold, schema)


def test_exact_match_bad_gold_raises():
    with pytest.raises(ValueError, match="gold query cannot be parsed"):
        exact_match("SELECT 1", "SELECT name FROM (((")
    with pytest.raises(ValueError, match="gold query cannot be parsed"):
        exact_match("SELECT 1", "   ")


def test_read_schema(concert_db, tmp_path):
    schema = read_schema(concert_db)
    assert sorted(schema) == ["concert", "singer", "singer_in_concert", "stadium"]
    assert schema["singer_in_concert"] == ["concert_ID", "Singer_ID"]
    assert schema["singer"] == ["Singer_ID", "Name", "Country", "Song_Name", "Song_release_year", "Age", "Is_male"]
    with pytest.raises(FileNotFoundError, match="absent.sqlite"):
        read_schema(tmp_path / "absent.sqlite")
