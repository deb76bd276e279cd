"""Spider exact-set match: sqlglot parse tree -> canonical nested tuples of strings, compared with ==.

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

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp

from lm_eval_diffusion.metrics.sql.cleaning import _segments, clean_sql

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
