"""Spider stand-in: two SQLite databases, their tables.json schemas, and templated questions with gold SQL.

Deviations from the real data (see the package docstring for why):
- Spider questions are single-table counts, aggregates and text-value filters (no joins, HAVING, set
  operations, numeric comparisons): short gold queries.
- Spider `sql` holds the parsed form for the generated templates (the same nested lists as the real
  release), computed from the query structure rather than by Spider's own parser.
- Spider `train_spider.json` uses the same two databases as `dev.json`.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import _MAX_DRAWS_PER_ITEM, _draw_held_out_first

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
