"""Minimal DFAs of brics regex ASTs: the alphabet partition, construction, equivalence, compilation.

Automata are built over a partition of all code points 0..0x10FFFF into classes that every
character set of the compared patterns treats alike, so one class stands for all its characters
(brics works on UTF-16 code units; the two agree on every string without astral characters).
Every sub-expression becomes a complete, minimal DFA (dead state included), the way brics builds
them, so complement flips accepting states and equivalence is equality of canonical tables.
The caps below bound the construction; a prediction over one fails, a gold over one raises.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections import deque
from dataclasses import dataclass

from lm_eval_diffusion.metrics.regex.syntax import (
    MAX_CODE_POINT,
    Chars,
    Complement,
    Concat,
    Epsilon,
    Intersection,
    Node,
    Nothing,
    RegexLimitError,
    RegexSyntaxError,
    Repeat,
    Union,
    _walk_nodes,
    parse,
)

# States of any single DFA, intermediate or final.
MAX_DFA_STATES = 20_000
# Transitions computed while building one pattern's automata (states x classes, summed over all
# constructions and minimisations); about a second of CPU in pure Python.
MAX_WORK = 1_000_000
# Wall-clock backstop for building one (prediction, gold) pair; the caps above normally fire first,
# and they are deterministic, unlike this. The budget is this plus GOLD_TIME_FACTOR times the gold's
# own build time (measured once per gold), so a prediction about as costly as its gold (a correct one,
# say) is never cut by a slow or loaded machine: both times grow with the load, their ratio does not.
PREDICTION_TIME_LIMIT_S = 1.0
GOLD_TIME_FACTOR = 10.0


# ----------------------------------------------------------------------------------------------
# Alphabet partition


@dataclass(frozen=True)
class _Partition:
    """Classes of code points that every character set of the compared patterns treats alike."""

    starts: tuple[int, ...]  # first code point of each elementary interval, ascending, from 0
    interval_class: tuple[int, ...]  # class id of each interval
    members: dict[tuple[tuple[int, int], ...], frozenset[int]]  # char set -> class ids inside it
    representatives: tuple[str, ...]  # one concrete character per class, printable ASCII if any

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.representatives)

    def class_of(self, ch: str) -> int:
        """The class id of one character."""
        return self.interval_class[bisect.bisect_right(self.starts, ord(ch)) - 1]


def _make_partition(roots: list[Node]) -> _Partition:
    """Partition 0..MAX_CODE_POINT by membership in every char set of `roots` (merging alike)."""
    sets = sorted(
        {node.ranges for root in roots for node in _walk_nodes(root) if isinstance(node, Chars)}
    )
    cuts = {0}
    for ranges in sets:
        for lo, hi in ranges:
            cuts.add(lo)
            if hi < MAX_CODE_POINT:
                cuts.add(hi + 1)
    starts = sorted(cuts)
    # Intervals are elementary, so an interval lies in a set iff its first code point does.
    position = {start: i for i, start in enumerate(starts)}
    inside: list[list[int]] = [[] for _ in starts]  # per interval: indices of the sets holding it
    for j, ranges in enumerate(sets):
        for lo, hi in ranges:
            for i in range(position[lo], position.get(hi + 1, len(starts))):
                inside[i].append(j)
    signature_of: dict[tuple[int, ...], int] = {}
    interval_class = [signature_of.setdefault(tuple(sig), len(signature_of)) for sig in inside]
    signatures = list(signature_of)
    members = {
        ranges: frozenset(cls for cls, signature in enumerate(signatures) if j in signature)
        for j, ranges in enumerate(sets)
    }
    best: list[tuple[bool, bool, int]] = [(True, True, MAX_CODE_POINT + 1)] * len(signatures)
    ends = starts[1:] + [MAX_CODE_POINT + 1]
    for start, end, cls in zip(starts, ends, interval_class):
        # Printable ASCII first (readable test strings), then anything but a lone surrogate.
        printable = max(start, 0x21)
        if printable < min(end, 0x7F):
            rank = (False, False, printable)
        else:
            rank = (True, 0xD800 <= start <= 0xDFFF, start)
        best[cls] = min(best[cls], rank)
    return _Partition(
        starts=tuple(starts),
        interval_class=tuple(interval_class),
        members=members,
        representatives=tuple(chr(code) for _, _, code in best),
    )


# ----------------------------------------------------------------------------------------------
# DFAs: complete (every state has a move on every class), start state 0.


@dataclass(frozen=True)
class _Dfa:
    """A complete DFA over partition classes; `trans[state][cls]` is the next state."""

    trans: list[list[int]]
    accept: list[bool]


class _Limits:
    """Caps on the automata built for one pattern; raises RegexLimitError when one is exceeded."""

    def __init__(self, deadline: float | None) -> None:
        # Read at call time, so tests can lower the caps.
        self.max_states = MAX_DFA_STATES
        self.work_left = MAX_WORK
        self.deadline = deadline  # time.monotonic() value, or None for no wall-clock limit

    def spend(self, units: int, num_states: int) -> None:
        """Account `units` transitions of work while a DFA under construction has `num_states`."""
        self.work_left -= units
        if self.work_left < 0:
            raise RegexLimitError(f"automaton construction exceeded MAX_WORK={MAX_WORK}")
        if num_states > self.max_states:
            raise RegexLimitError(f"DFA exceeded MAX_DFA_STATES={self.max_states} states")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise RegexLimitError("automaton construction exceeded its time limit")


def _minimize(dfa: _Dfa, k: int, limits: _Limits) -> _Dfa:
    """Hopcroft minimisation, renumbered in BFS order from the start (all states reachable)."""
    trans, accept = dfa.trans, dfa.accept
    n = len(trans)
    limits.spend(n * k, n)
    inverse: list[list[list[int]]] = [[[] for _ in range(n)] for _ in range(k)]
    for s, row in enumerate(trans):
        for c, t in enumerate(row):
            inverse[c][t].append(s)
    finals = {s for s in range(n) if accept[s]}
    others = set(range(n)) - finals
    blocks = [b for b in (finals, others) if b]
    block_of = [0] * n
    for b, members in enumerate(blocks):
        for s in members:
            block_of[s] = b
    pending = {min(range(len(blocks)), key=lambda b: len(blocks[b]))} if len(blocks) == 2 else set()
    while pending:
        splitter = list(blocks[pending.pop()])
        for c in range(k):
            inv = inverse[c]
            touched: dict[int, list[int]] = {}
            for t in splitter:
                for s in inv[t]:
                    touched.setdefault(block_of[s], []).append(s)
            for b, hit in touched.items():
                if len(hit) == len(blocks[b]):
                    continue
                part = set(hit)
                blocks[b] -= part
                new = len(blocks)
                blocks.append(part)
                for s in part:
                    block_of[s] = new
                if b in pending or len(part) <= len(blocks[b]):
                    pending.add(new)
                else:
                    pending.add(b)
    # Canonical BFS numbering: equal languages then give identical tables.
    order = {block_of[0]: 0}
    queue = [block_of[0]]
    rep = {b: next(iter(members)) for b, members in enumerate(blocks)}
    new_trans: list[list[int]] = []
    for b in queue:
        row = []
        for t in trans[rep[b]]:
            tb = block_of[t]
            if tb not in order:
                order[tb] = len(queue)
                queue.append(tb)
            row.append(order[tb])
        new_trans.append(row)
    return _Dfa(new_trans, [accept[rep[b]] for b in queue])


def _dead_only(k: int) -> _Dfa:
    """The empty language."""
    return _Dfa([[0] * k], [False])


def _epsilon(k: int) -> _Dfa:
    """The empty string only."""
    return _Dfa([[1] * k, [1] * k], [True, False])


def _char_set(classes: frozenset[int], k: int) -> _Dfa:
    """Exactly one character from `classes`."""
    if not classes:
        return _dead_only(k)
    first = [1 if c in classes else 2 for c in range(k)]
    return _Dfa([first, [2] * k, [2] * k], [False, True, False])


def _product(parts: list[_Dfa], k: int, is_union: bool, limits: _Limits) -> _Dfa:
    """Union or intersection of all `parts` by one product construction."""
    tables = [part.trans for part in parts]
    start = (0,) * len(parts)
    index = {start: 0}
    states = [start]
    trans: list[list[int]] = []
    for key in states:
        limits.spend(k, len(states))
        rows = [table[s] for table, s in zip(tables, key)]
        row = []
        for c in range(k):
            nxt = tuple([r[c] for r in rows])
            s = index.get(nxt)
            if s is None:
                s = index[nxt] = len(states)
                states.append(nxt)
            row.append(s)
        trans.append(row)
    combine = any if is_union else all
    accept = [combine([part.accept[s] for part, s in zip(parts, key)]) for key in states]
    return _minimize(_Dfa(trans, accept), k, limits)


def _live_states(dfa: _Dfa) -> list[bool]:
    """Which states can still reach an accepting state."""
    preds: list[list[int]] = [[] for _ in dfa.trans]
    for s, row in enumerate(dfa.trans):
        for t in set(row):
            preds[t].append(s)
    live = list(dfa.accept)
    queue = [s for s, ok in enumerate(live) if ok]
    for t in queue:
        for s in preds[t]:
            if not live[s]:
                live[s] = True
                queue.append(s)
    return live


def _concat(parts: list[_Dfa], k: int, limits: _Limits) -> _Dfa:
    """Concatenation of all `parts` by one subset construction.

    A state is the set of (part index, state of that part) that may be running; a part that
    reaches acceptance starts the next one, and states that cannot accept any more are dropped.
    """
    last = len(parts) - 1
    lives = [_live_states(part) for part in parts]

    def closed(running: set[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        pending = list(running)
        while pending:
            i, s = pending.pop()
            if i < last and parts[i].accept[s] and lives[i + 1][0] and (i + 1, 0) not in running:
                running.add((i + 1, 0))
                pending.append((i + 1, 0))
        return frozenset(running)

    start = closed({(0, 0)} if lives[0][0] else set())
    index = {start: 0}
    states = [start]
    trans: list[list[int]] = []
    for running in states:
        limits.spend(k, len(states))
        row = []
        for c in range(k):
            moved = set()
            for i, s in running:
                t = parts[i].trans[s][c]
                if lives[i][t]:
                    moved.add((i, t))
            key = closed(moved)
            s = index.get(key)
            if s is None:
                s = index[key] = len(states)
                states.append(key)
            row.append(s)
        trans.append(row)
    final = parts[last].accept
    accept = [any(i == last and final[s] for i, s in running) for running in states]
    return _minimize(_Dfa(trans, accept), k, limits)


def _star(a: _Dfa, k: int, limits: _Limits) -> _Dfa:
    """Kleene star: states are sets of live states of `a`, plus a distinct accepting start."""
    live = _live_states(a)
    restart = frozenset([0]) if live[0] else frozenset()
    start: frozenset[int] | None = None  # the fresh start, accepting because of the empty string
    index: dict[frozenset[int] | None, int] = {start: 0}
    states: list[frozenset[int] | None] = [start]
    trans: list[list[int]] = []
    for running in states:
        limits.spend(k, len(states))
        row = []
        for c in range(k):
            sources = restart if running is None else running
            moved = frozenset(t for t in (a.trans[s][c] for s in sources) if live[t])
            key = moved | restart if any(a.accept[t] for t in moved) else moved
            s = index.get(key)
            if s is None:
                s = index[key] = len(states)
                states.append(key)
            row.append(s)
        trans.append(row)
    accept = [running is None or any(a.accept[s] for s in running) for running in states]
    return _minimize(_Dfa(trans, accept), k, limits)


def _power(a: _Dfa, count: int, k: int, limits: _Limits) -> _Dfa:
    """`a` concatenated `count` times, by repeated squaring (log2(count) concatenations)."""
    result = _epsilon(k)
    base = a
    while count:
        if count & 1:
            result = _concat([result, base], k, limits)
        count >>= 1
        if count:
            base = _concat([base, base], k, limits)
    return result


def _repeat(a: _Dfa, low: int, high: int | None, k: int, limits: _Limits) -> _Dfa:
    """`a{low,high}` (high None: unbounded); low > high is the empty language, as in brics."""
    if high is None:
        star = _star(a, k, limits)
        return star if low == 0 else _concat([_power(a, low, k, limits), star], k, limits)
    if low > high:
        return _dead_only(k)
    optional = _product([a, _epsilon(k)], k, True, limits)
    return _concat([_power(a, low, k, limits), _power(optional, high - low, k, limits)], k, limits)


def _build(root: Node, partition: _Partition, limits: _Limits) -> _Dfa:
    """The minimal complete DFA of `root` over `partition` (iterative post-order)."""
    k = partition.num_classes
    built: dict[int, _Dfa] = {}
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        kids = node.children()
        if kids and not expanded:
            stack.append((node, True))
            stack.extend((kid, False) for kid in kids)
            continue
        done = [built[id(kid)] for kid in kids]
        if isinstance(node, Chars):
            dfa = _char_set(partition.members[node.ranges], k)
        elif isinstance(node, Epsilon):
            dfa = _epsilon(k)
        elif isinstance(node, Nothing):
            dfa = _dead_only(k)
        elif isinstance(node, Complement):
            dfa = _Dfa(done[0].trans, [not x for x in done[0].accept])
        elif isinstance(node, Repeat):
            dfa = _repeat(done[0], node.min, node.max, k, limits)
        elif isinstance(node, Concat):
            dfa = _concat(done, k, limits)
        elif isinstance(node, (Union, Intersection)):
            dfa = _product(done, k, isinstance(node, Union), limits)
        else:
            raise TypeError(f"unknown AST node {type(node).__name__}")
        built[id(node)] = dfa  # every node is alive in the tree, so ids are unique here
    return _minimize(built[id(root)], k, limits)


def _run(dfa: _Dfa, word: list[int] | tuple[int, ...]) -> bool:
    """Whether `dfa` accepts a word of class ids."""
    state = 0
    trans = dfa.trans
    for c in word:
        state = trans[state][c]
    return dfa.accept[state]


def _same_language(a: _Dfa, b: _Dfa) -> bool:
    """Minimal complete DFAs with all states reachable accept the same language iff isomorphic."""
    if len(a.accept) != len(b.accept):
        return False
    # Both come out of `_minimize` in canonical BFS numbering, so isomorphic means identical.
    return a.trans == b.trans and a.accept == b.accept


def _shortest_difference(a: _Dfa, b: _Dfa, k: int, limits: _Limits) -> list[int] | None:
    """A shortest class word accepted by exactly one of `a`, `b` (product BFS), or None."""
    parent: dict[tuple[int, int], tuple[tuple[int, int], int] | None] = {(0, 0): None}
    queue = deque([(0, 0)])
    while queue:
        pair = queue.popleft()
        if a.accept[pair[0]] != b.accept[pair[1]]:
            word: list[int] = []
            while parent[pair] is not None:
                pair, c = parent[pair]  # type: ignore[misc]
                word.append(c)
            return word[::-1]
        limits.spend(k, len(parent))
        row_a, row_b = a.trans[pair[0]], b.trans[pair[1]]
        for c in range(k):
            nxt = (row_a[c], row_b[c])
            if nxt not in parent:
                parent[nxt] = (pair, c)
                queue.append(nxt)
    return None


# ----------------------------------------------------------------------------------------------
# Compilation of a (prediction, gold) pair


@dataclass(frozen=True)
class _Pair:
    """Both patterns' minimal DFAs over their common partition."""

    partition: _Partition
    pred: _Dfa
    gold: _Dfa


@functools.lru_cache(maxsize=1_024)
def _compile_pair(pred: str, gold: str) -> _Pair | None:
    """The pair's DFAs, None if the prediction is invalid or over a cap; raises for a bad gold."""
    gold_ast = parse(gold)
    try:
        pred_ast = parse(pred)
    except (RegexSyntaxError, RegexLimitError):
        return None
    # Raises if the gold is over a cap on its own (a dataset problem); its build time sets the budget.
    budget = PREDICTION_TIME_LIMIT_S + GOLD_TIME_FACTOR * _compile_one(gold).build_seconds
    partition = _make_partition([gold_ast, pred_ast])
    # The prediction's characters shape the partition and so the cost of the gold's automaton
    # too: both builds share the prediction's deadline, and a failure is the prediction's
    # (the gold alone has just built).
    deadline = time.monotonic() + budget
    try:
        gold_dfa = _build(gold_ast, partition, _Limits(deadline))
        pred_dfa = _build(pred_ast, partition, _Limits(deadline))
    except RegexLimitError:
        return None
    return _Pair(partition, pred_dfa, gold_dfa)


@dataclass(frozen=True)
class _Single:
    """One pattern's partition and minimal DFA, and the seconds this machine took to build the DFA."""

    partition: _Partition
    dfa: _Dfa
    build_seconds: float


@functools.lru_cache(maxsize=1_024)
def _compile_one(pattern: str) -> _Single:
    """One pattern's partition and DFA; raises for an invalid pattern or one over a cap."""
    root = parse(pattern)
    partition = _make_partition([root])
    start = time.monotonic()
    # No wall-clock limit: a slow machine must not turn a valid regex into an error.
    dfa = _build(root, partition, _Limits(None))
    return _Single(partition, dfa, time.monotonic() - start)
