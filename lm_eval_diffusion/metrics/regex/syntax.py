r"""dk.brics.automaton regex syntax: the resource caps of parsing, the AST, and the parser.

The NL-RX regexes use dk.brics.automaton syntax, not Python's: a pattern matches the whole
string, `&` is intersection, `~` is complement, `.` is any character, `#` the empty language, `@`
any string, `"..."` a quoted literal, `()` the empty string, and `\x` is always the literal
character x (so `\b` is the letter b, not a word boundary). Precedence, loosest first: `|`, `&`,
concatenation, postfix repetition (`*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`), prefix `~` (so `~a*` is
`(~a)*`). Like brics, a character that cannot start anything else is a literal wherever an atom is
expected (`*a` is the string "*a", `a|)` is "a" or ")"), a reversed range `[z-a]` or count
`{3,2}` is the empty language, and `[^...]` is any one character outside the class. Named
automata and numeric intervals (`<...>`) are rejected. The parser is hand-written because these
quirks are brics' own: no Python regex library parses them alike.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

MAX_CODE_POINT = 0x10FFFF
# The longest NL-RX gold regex has 54 characters; 1,000 leaves room for any sane prediction.
MAX_PATTERN_CHARS = 1_000
# Largest n or m accepted in {n}, {n,}, {n,m}; NL-RX golds use at most 7.
MAX_REPEAT = 1_000
# Height of the AST; bounds the nesting of operators (parentheses alone add no height).
MAX_AST_DEPTH = 100


class RegexSyntaxError(ValueError):
    """A pattern that is not valid dk.brics.automaton syntax; `position` is its 0-based offset."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} at position {position}")
        self.position = position


class RegexLimitError(ValueError):
    """A pattern whose parse or automaton would exceed a resource cap of this module."""


# ----------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Node:
    """A regex AST node; `depth` is the height of its subtree (a leaf has depth 1)."""

    depth: int = field(init=False, compare=False, repr=False)

    def children(self) -> tuple[Node, ...]:
        """The direct sub-expressions, in order."""
        return ()

    def __post_init__(self) -> None:
        # Stored, not recomputed, so depth checks and traversals never recurse.
        object.__setattr__(self, "depth", 1 + max((c.depth for c in self.children()), default=0))


@dataclass(frozen=True)
class Chars(Node):
    """One character from a set of inclusive code-point ranges (sorted, disjoint, non-adjacent)."""

    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Epsilon(Node):
    """The empty string only."""


@dataclass(frozen=True)
class Nothing(Node):
    """The empty language."""


@dataclass(frozen=True)
class Concat(Node):
    """Concatenation of two or more expressions."""

    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        """The concatenated expressions."""
        return self.items


@dataclass(frozen=True)
class Union(Node):
    """Union (`|`) of two or more expressions."""

    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        """The alternatives."""
        return self.items


@dataclass(frozen=True)
class Intersection(Node):
    """Intersection (`&`) of two or more expressions."""

    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        """The intersected expressions."""
        return self.items


@dataclass(frozen=True)
class Complement(Node):
    """Complement (`~`) with respect to all strings."""

    item: Node

    def children(self) -> tuple[Node, ...]:
        """The complemented expression."""
        return (self.item,)


@dataclass(frozen=True)
class Repeat(Node):
    """`item` repeated min..max times (max None: unbounded); min > max is the empty language."""

    item: Node
    min: int
    max: int | None

    def children(self) -> tuple[Node, ...]:
        """The repeated expression."""
        return (self.item,)


_ANY_RANGES = ((0, MAX_CODE_POINT),)


def _normalize_ranges(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sort and merge overlapping or adjacent inclusive ranges."""
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return tuple(merged)


def _complement_ranges(ranges: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The code points 0..MAX_CODE_POINT not covered by normalised `ranges`."""
    out: list[tuple[int, int]] = []
    nxt = 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= MAX_CODE_POINT:
        out.append((nxt, MAX_CODE_POINT))
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# Parser: iterative (an explicit stack of open groups), so 10,000 nested parentheses cannot hit
# Python's recursion limit; it mirrors brics' recursive-descent RegExp parser decision by decision.


class _Group:
    """Partial results inside one pair of parentheses (or the whole pattern)."""

    __slots__ = ("alternatives", "operands", "items", "num_complements")

    def __init__(self, num_complements: int) -> None:
        self.alternatives: list[Node] = []
        self.operands: list[Node] = []
        self.items: list[Node] = []
        self.num_complements = num_complements  # `~`s written before the `(`


class _Parser:
    """Parses one pattern; see `parse`."""

    def __init__(self, pattern: str) -> None:
        self.s = pattern
        self.n = len(pattern)
        self.pos = 0

    def error(self, message: str, position: int | None = None) -> RegexSyntaxError:
        """A syntax error at `position` (default: the current position)."""
        return RegexSyntaxError(message, self.pos if position is None else position)

    def checked(self, node: Node) -> Node:
        """`node`, after enforcing MAX_AST_DEPTH."""
        if node.depth > MAX_AST_DEPTH:
            raise RegexLimitError(
                f"expression nested deeper than MAX_AST_DEPTH={MAX_AST_DEPTH}"
                f" at position {self.pos}"
            )
        return node

    def combine(self, kind: type, items: list[Node]) -> Node:
        """Concat/Union/Intersection of `items`, flattening same-kind children (all associative)."""
        flat: list[Node] = []
        for item in items:
            flat.extend(item.items if isinstance(item, kind) else (item,))
        return flat[0] if len(flat) == 1 else self.checked(kind(tuple(flat)))

    def end_operand(self, group: _Group) -> None:
        """Close the concatenation being built as one operand of `&`."""
        group.operands.append(self.combine(Concat, group.items))
        group.items = []

    def end_alternative(self, group: _Group) -> None:
        """Close the intersection being built as one alternative of `|`."""
        self.end_operand(group)
        group.alternatives.append(self.combine(Intersection, group.operands))
        group.operands = []

    def finish(self, group: _Group) -> Node:
        """The expression of a closed group."""
        self.end_alternative(group)
        return self.combine(Union, group.alternatives)

    def complemented(self, node: Node, count: int) -> Node:
        """`node` under `count` prefix complements."""
        if count > MAX_AST_DEPTH:
            raise RegexLimitError(
                f"more than MAX_AST_DEPTH={MAX_AST_DEPTH} chained '~' at position {self.pos}"
            )
        for _ in range(count):
            node = self.checked(Complement(node))
        return node

    def char_exp(self) -> int:
        """One possibly escaped character: `\\x` is always the literal x."""
        if self.pos < self.n and self.s[self.pos] == "\\":
            self.pos += 1
        if self.pos >= self.n:
            raise self.error("unexpected end-of-string")
        self.pos += 1
        return ord(self.s[self.pos - 1])

    def char_class(self) -> Node:
        """`[...]` or `[^...]`; like brics, the first member may be `]` and is then literal."""
        self.pos += 1
        negate = self.pos < self.n and self.s[self.pos] == "^"
        if negate:
            self.pos += 1
        ranges: list[tuple[int, int]] = []
        while True:
            lo = self.char_exp()
            if self.pos < self.n and self.s[self.pos] == "-":
                self.pos += 1
                if self.pos < self.n and self.s[self.pos] == "]":
                    ranges += [(lo, lo), (ord("-"), ord("-"))]
                else:
                    hi = self.char_exp()
                    if lo <= hi:  # brics makes a reversed range the empty set
                        ranges.append((lo, hi))
            else:
                ranges.append((lo, lo))
            if self.pos >= self.n:
                raise self.error("expected ']'")
            if self.s[self.pos] == "]":
                self.pos += 1
                break
        merged = _normalize_ranges(ranges)
        return Chars(_complement_ranges(merged) if negate else merged)

    def simple_atom(self) -> Node:
        """An atom other than a non-empty group: class, `.`, `#`, `@`, `"..."`, `()`, or a char."""
        c = self.s[self.pos]
        if c == "[":
            return self.char_class()
        if c == ".":
            self.pos += 1
            return Chars(_ANY_RANGES)
        if c == "#":
            self.pos += 1
            return Nothing()
        if c == "@":
            self.pos += 1
            return Repeat(Chars(_ANY_RANGES), 0, None)
        if c == '"':
            end = self.s.find('"', self.pos + 1)
            if end < 0:
                raise self.error("expected '\"'", self.n)
            text = self.s[self.pos + 1 : end]
            self.pos = end + 1
            if not text:
                return Epsilon()
            chars = [Chars(((ord(ch), ord(ch)),)) for ch in text]
            return chars[0] if len(chars) == 1 else Concat(tuple(chars))
        if c == "(":  # the caller only hands over "()"
            self.pos += 2
            return Epsilon()
        if c == "<":
            raise self.error("named automata and numeric intervals '<...>' are not supported")
        code = self.char_exp()
        return Chars(((code, code),))

    def count(self) -> int:
        """A decimal repetition count, capped at MAX_REPEAT."""
        start = self.pos
        while self.pos < self.n and self.s[self.pos] in "0123456789":
            self.pos += 1
        digits = self.s[start : self.pos]
        if not digits:
            raise self.error("integer expected")
        # Checked on the string: int() of a 10,000-digit string is slow and may be refused.
        if len(digits.lstrip("0")) > len(str(MAX_REPEAT)) or int(digits) > MAX_REPEAT:
            raise RegexLimitError(
                f"repetition count above MAX_REPEAT={MAX_REPEAT} at position {start}"
            )
        return int(digits)

    def postfix(self, node: Node) -> Node:
        """Apply any postfix repetitions `? * + {n} {n,} {n,m}` that follow."""
        while self.pos < self.n and self.s[self.pos] in "?*+{":
            op = self.s[self.pos]
            self.pos += 1
            if op == "?":
                node = self.checked(Repeat(node, 0, 1))
            elif op == "*":
                node = self.checked(Repeat(node, 0, None))
            elif op == "+":
                node = self.checked(Repeat(node, 1, None))
            else:
                low = self.count()
                high: int | None = low
                if self.pos < self.n and self.s[self.pos] == ",":
                    self.pos += 1
                    has_high = self.pos < self.n and self.s[self.pos] in "0123456789"
                    high = self.count() if has_high else None
                if self.pos >= self.n or self.s[self.pos] != "}":
                    raise self.error("expected '}'")
                self.pos += 1
                node = self.checked(Repeat(node, low, high))
        return node

    def parse(self) -> Node:
        """The AST of the whole pattern."""
        s, n = self.s, self.n
        if n == 0:
            return Epsilon()
        groups = [_Group(0)]
        while True:
            # An atom is expected here: after the start, `(`, `|`, `&`, or a finished atom.
            num_complements = 0
            while self.pos < n and s[self.pos] == "~":
                num_complements += 1
                self.pos += 1
            if self.pos >= n:
                raise self.error("unexpected end-of-string")
            if s[self.pos] == "(" and not (self.pos + 1 < n and s[self.pos + 1] == ")"):
                groups.append(_Group(num_complements))
                self.pos += 1
                continue
            atom = self.complemented(self.simple_atom(), num_complements)
            while True:
                group = groups[-1]
                group.items.append(self.postfix(atom))
                if self.pos >= n:
                    if len(groups) > 1:
                        raise self.error("expected ')'")
                    return self.finish(group)
                c = s[self.pos]
                if c == "|":
                    self.end_alternative(group)
                    self.pos += 1
                elif c == "&":
                    self.end_operand(group)
                    self.pos += 1
                elif c == ")":
                    if len(groups) == 1:
                        raise self.error("end-of-string expected")
                    groups.pop()
                    self.pos += 1
                    atom = self.complemented(self.finish(group), group.num_complements)
                    continue  # the closed group is an atom: postfix operators may follow
                break


def parse(pattern: str) -> Node:
    """Parse a dk.brics.automaton regex into an AST; raises RegexSyntaxError or RegexLimitError."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise RegexLimitError(f"pattern longer than MAX_PATTERN_CHARS={MAX_PATTERN_CHARS}")
    return _parse_cached(pattern)


@functools.lru_cache(maxsize=16_384)
def _parse_cached(pattern: str) -> Node:
    # ASTs are immutable, so sharing cached ones is safe; errors are not cached and re-raise.
    return _Parser(pattern).parse()


def _walk_nodes(root: Node) -> list[Node]:
    """All nodes of the tree, parents before children (iterative, no recursion)."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children())
    return out
