"""The regex metrics (exact, DFA, functional, startswith) and the test strings they sample.

func_match draws seeded random strings (one reading of the paper's functional match);
func_match_targeted draws strings aimed at where the two DFAs differ; perturb_regex makes the
one-edit variants that tests and benchmarks label.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import random
import re
from collections import deque
from collections.abc import Iterator

from lm_eval_diffusion.metrics.regex.automata import (
    _compile_one,
    _compile_pair,
    _Limits,
    _Pair,
    _run,
    _same_language,
    _shortest_difference,
)

# ----------------------------------------------------------------------------------------------
# Random sampling for func_match (one reading of the paper's "200 randomly sampled strings")

# Printable ASCII, space included (95 characters): the characters a "random string" is usually
# drawn from; it covers every character NL-RX-SYNTH's golds name.
RANDOM_ALPHABET = "".join(chr(code) for code in range(0x20, 0x7F))
# Half the strings are drawn from the gold's language, half uniformly (see func_match).
_GOLD_LANGUAGE_SHARE = 0.5
# Uniform strings have a uniform length in 0.._RANDOM_MAX_LEN; gold-language strings one in
# m..m + _RANDOM_MAX_LEN, m the length of the gold's shortest string (NL-RX golds need up to 40).
_RANDOM_MAX_LEN = 16


def _pair_rng(pred: str, gold: str) -> random.Random:
    """A generator seeded by the pair alone: blake2b of the UTF-8 JSON of [pred, gold].

    Never Python's hash(), which is salted per process for strings.
    """
    payload = json.dumps([pred, gold], ensure_ascii=False).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.blake2b(payload).digest(), "big"))


class _GoldLanguageSampler:
    """Uniform random strings of the gold's language over RANDOM_ALPHABET, by length.

    `counts[n][state]` is the number of strings of length n over the alphabet that the gold's DFA
    accepts from `state` (exact integers), so a string of a given length is drawn uniformly by
    choosing each character with weight the number of accepted completions after it.
    """

    def __init__(self, pair: _Pair, rng: random.Random) -> None:
        self.rng = rng
        self.trans = pair.gold.trans
        by_class: dict[int, list[int]] = {}  # class -> indices of its alphabet characters
        for i, ch in enumerate(RANDOM_ALPHABET):
            by_class.setdefault(pair.partition.class_of(ch), []).append(i)
        # Characters grouped by the gold's moves on them (its DFA's column), in alphabet order:
        # the work below then depends on the gold alone, not on how finely the prediction's
        # characters split the partition.
        by_column: dict[tuple[int, ...], tuple[int, list[int]]] = {}
        for c, chars in sorted(by_class.items(), key=lambda item: item[1][0]):
            by_column.setdefault(tuple(row[c] for row in self.trans), (c, []))[1].extend(chars)
        self.groups = [(c, sorted(chars)) for c, chars in by_column.values()]
        # Shortest accepted length along alphabet characters only (-1: no string).
        shortest = _distance_to_accept(
            [[row[c] for c, _ in self.groups] for row in self.trans], pair.gold.accept
        )[0]
        self.counts: list[list[int]] = [[int(ok) for ok in pair.gold.accept]]
        self.lengths: list[int] = []
        if shortest < 0:
            return
        for _ in range(shortest + _RANDOM_MAX_LEN):
            prev = self.counts[-1]
            self.counts.append(
                [sum(len(chars) * prev[row[c]] for c, chars in self.groups) for row in self.trans]
            )
        self.lengths = [
            n for n in range(shortest, shortest + _RANDOM_MAX_LEN + 1) if self.counts[n][0]
        ]
        # (characters still to draw after this one, state) -> cumulative weights of the groups
        # with accepted completions, and those groups as (characters, next state, completions).
        self.steps: dict[tuple[int, int], tuple[list[int], list[tuple[list[int], int, int]]]] = {}

    def has_strings(self) -> bool:
        """Whether the gold accepts some string over the alphabet."""
        return bool(self.lengths)

    def _step(self, left: int, state: int) -> tuple[list[int], list[tuple[list[int], int, int]]]:
        """The weighted moves from `state` with `left` characters to draw after this one."""
        step = self.steps.get((left, state))
        if step is None:
            cumulative, moves, total = [], [], 0
            for c, chars in self.groups:
                nxt = self.trans[state][c]
                after = self.counts[left][nxt]
                if after:
                    total += len(chars) * after
                    cumulative.append(total)
                    moves.append((chars, nxt, after))
            step = self.steps[(left, state)] = (cumulative, moves)
        return step

    def sample(self) -> list[int]:
        """One string the gold accepts, as indices into RANDOM_ALPHABET; needs has_strings()."""
        rng = self.rng
        n = self.lengths[rng.randrange(len(self.lengths))]
        state, word = 0, []
        for left in range(n - 1, -1, -1):
            cumulative, moves = self._step(left, state)
            r = rng.randrange(cumulative[-1])
            j = bisect.bisect_right(cumulative, r)
            chars, state, after = moves[j]
            # Each of the group's characters equally likely.
            word.append(chars[(r - (cumulative[j - 1] if j else 0)) // after])
        return word


def _random_words(pair: _Pair, num_strings: int, rng: random.Random) -> Iterator[list[int]]:
    """func_match's strings as indices into RANDOM_ALPHABET, drawn lazily (see func_match)."""
    sampler = _GoldLanguageSampler(pair, rng)
    num_gold = round(_GOLD_LANGUAGE_SHARE * num_strings) if sampler.has_strings() else 0
    for _ in range(num_gold):
        yield sampler.sample()
    indices = range(len(RANDOM_ALPHABET))
    for _ in range(num_strings - num_gold):
        yield rng.choices(indices, k=rng.randint(0, _RANDOM_MAX_LEN))


# ----------------------------------------------------------------------------------------------
# Targeted sampling for func_match_targeted

# func_match_targeted's mix: 70% walks, 20% near misses of the walks' strings, 10% uniform random
# strings.
_WALK_SHARE = 0.70
_NEAR_MISS_SHARE = 0.20
# Targets of the walks, cycled in this order (3:3:1:1): a walk ends where its DFA accepts
# ("+") or, walking its complement, where it rejects ("-"). Rejected strings matter for
# complements, whose structure lives in what they reject: `~((dog){6,})`.
_WALK_CYCLE = ("gold+", "pred+", "gold+", "pred+", "gold+", "pred+", "gold-", "pred-")
# Share of walks that start at the next product state in breadth-first order (per target); the
# others start at the empty string.
_BFS_SEEDED_SHARE = 0.75
# An unseeded walk takes a uniform 0.._MAX_FREE_STEPS random steps, then a shortest way to its end.
_MAX_FREE_STEPS = 16
# The breadth-first order stops growing at this many product states per test string.
_BFS_STATES_PER_STRING = 50
_TARGETED_MAX_RANDOM_LEN = 12


def _distance_to_accept(trans: list[list[int]], accept: list[bool]) -> list[int]:
    """Shortest distance from each state to an accepting state; -1 where none is reachable."""
    preds: list[list[int]] = [[] for _ in trans]
    for s, row in enumerate(trans):
        for t in set(row):
            preds[t].append(s)
    dist = [0 if ok else -1 for ok in accept]
    queue = deque(s for s, ok in enumerate(accept) if ok)
    while queue:
        t = queue.popleft()
        for s in preds[t]:
            if dist[s] < 0:
                dist[s] = dist[t] + 1
                queue.append(s)
    return dist


class _Walker:
    """Random walks that end where a target DFA ("gold+", "pred+", "gold-", "pred-") accepts.

    Two languages differ exactly at the product states where one side accepts and the other does
    not, so seeded walks start from product states in breadth-first order, with the shortest word
    reaching each, and take a shortest way to their target from there: differences between small
    automata are found however unlikely a uniform walk is to spell them out, as in `~(.*dog.*)` vs
    `~(.*truck.*)`.
    """

    def __init__(self, pair: _Pair, rng: random.Random, max_bfs_states: int) -> None:
        self.rng = rng
        self.k = pair.partition.num_classes
        self.gold_trans, self.pred_trans = pair.gold.trans, pair.pred.trans
        self.num_pred_states = len(pair.pred.trans)
        self.dist: dict[str, list[int]] = {}
        for side, dfa in (("gold", pair.gold), ("pred", pair.pred)):
            self.dist[side + "+"] = _distance_to_accept(dfa.trans, dfa.accept)
            self.dist[side + "-"] = _distance_to_accept(dfa.trans, [not ok for ok in dfa.accept])
        # Per target and state, lazily: classes after which the target is still reachable
        # ("free"), and those among them that bring it strictly nearer ("closer").
        self.free_moves = {t: [None] * len(d) for t, d in self.dist.items()}
        self.closer_moves = {t: [None] * len(d) for t, d in self.dist.items()}
        # Product states in breadth-first order, with the shortest word reaching each.
        self.order: list[tuple[int, int, tuple[int, ...]]] = [(0, 0, ())]
        self.seen = {0}
        self.num_expanded = 0
        self.max_bfs_states = max_bfs_states
        self.next_seed = dict.fromkeys(self.dist, 0)

    def reachable(self, target: str) -> bool:
        """Whether some string ends at `target` (its language is non-empty)."""
        return self.dist[target][0] >= 0

    def _next_seed(self, target: str) -> tuple[int, tuple[int, ...]] | None:
        """The next product state in breadth-first order from which `target` is reachable, as
        (state of the target's DFA, word), or None when the order is exhausted or capped."""
        dist = self.dist[target]
        is_gold = target.startswith("gold")
        while True:
            i = self.next_seed[target]
            while i >= len(self.order):
                if self.num_expanded >= len(self.order) or len(self.order) >= self.max_bfs_states:
                    return None
                g, p, word = self.order[self.num_expanded]
                self.num_expanded += 1
                gold_row, pred_row = self.gold_trans[g], self.pred_trans[p]
                for c in range(self.k):
                    product = gold_row[c] * self.num_pred_states + pred_row[c]
                    if product not in self.seen:
                        self.seen.add(product)
                        self.order.append((gold_row[c], pred_row[c], word + (c,)))
            self.next_seed[target] = i + 1
            g, p, word = self.order[i]
            state = g if is_gold else p
            if dist[state] >= 0:
                return state, word

    def walk(self, target: str, seeded: bool) -> list[int]:
        """One class word that ends at `target`, which must be reachable."""
        rng, dist = self.rng, self.dist[target]
        trans = self.gold_trans if target.startswith("gold") else self.pred_trans
        free_moves, closer_moves = self.free_moves[target], self.closer_moves[target]
        seed = self._next_seed(target) if seeded else None
        if seed is None:  # unseeded, or every product state has had its seeded walk
            state, word, free_steps = 0, [], rng.randint(0, _MAX_FREE_STEPS)
        else:
            state, word = seed[0], list(seed[1])
            free_steps = len(word)
        while True:
            if len(word) >= free_steps:
                if dist[state] == 0:
                    return word
                moves = closer_moves[state]
                if moves is None:
                    here = dist[state]
                    moves = closer_moves[state] = [
                        c for c, t in enumerate(trans[state]) if 0 <= dist[t] < here
                    ]
            else:
                moves = free_moves[state]
                if moves is None:
                    moves = free_moves[state] = [
                        c for c, t in enumerate(trans[state]) if dist[t] >= 0
                    ]
                if not moves:  # at the target, and no way to continue
                    return word
            c = moves[int(rng.random() * len(moves))]
            state = trans[state][c]
            word.append(c)


def _targeted_words(pair: _Pair, num_strings: int, rng: random.Random) -> list[list[int]]:
    """The class words of func_match_targeted's mix (see func_match_targeted)."""
    k = pair.partition.num_classes
    walker = _Walker(pair, rng, _BFS_STATES_PER_STRING * num_strings)
    # An unreachable target (an empty language, or all strings) hands its turns to the others.
    cycle = [target for target in _WALK_CYCLE if walker.reachable(target)]
    walks = [
        walker.walk(cycle[i % len(cycle)], seeded=rng.random() < _BFS_SEEDED_SHARE)
        for i in range(round(_WALK_SHARE * num_strings))
    ]
    words = list(walks)
    for _ in range(round(_NEAR_MISS_SHARE * num_strings) if walks else 0):
        word = list(walks[rng.randrange(len(walks))])
        edit = rng.randrange(3) if word else 0
        if edit == 0:
            word.insert(rng.randint(0, len(word)), rng.randrange(k))
        elif edit == 1:
            del word[rng.randrange(len(word))]
        else:
            word[rng.randrange(len(word))] = rng.randrange(k)
        words.append(word)
    words.append([])  # the empty string is always tested
    while len(words) < num_strings:
        words.append([rng.randrange(k) for _ in range(rng.randint(0, _TARGETED_MAX_RANDOM_LEN))])
    return words[:num_strings]


# ----------------------------------------------------------------------------------------------
# Public API


def exact_match(pred: str, gold: str) -> bool:
    """Whether the two regexes are the same string once all whitespace is removed."""
    return "".join(pred.split()) == "".join(gold.split())


def dfa_match(pred: str, gold: str) -> bool:
    """Whether `pred` denotes exactly the language of `gold`; False if `pred` is invalid/too big."""
    pair = _compile_pair(pred, gold)
    return pair is not None and _same_language(pair.pred, pair.gold)


def func_test_strings(pred: str, gold: str, num_strings: int = 200) -> list[str]:
    """The strings func_match checks, in order; [] if `pred` is invalid or over a cap."""
    if num_strings < 1:
        raise ValueError(f"num_strings must be at least 1, got {num_strings}")
    pair = _compile_pair(pred, gold)
    if pair is None:
        return []
    words = _random_words(pair, num_strings, _pair_rng(pred, gold))
    return ["".join(RANDOM_ALPHABET[i] for i in word) for word in words]


def func_match(pred: str, gold: str, num_strings: int = 200) -> bool:
    """Whether `pred` accepts or rejects alike with `gold` each of `num_strings` random strings.

    One reading of the paper's functional match ("tests the predicted regex against 200 randomly
    sampled strings", Table 14, section 4.1; the metric of Tables 2 / 10 / 11). The paper
    publishes no alphabet, lengths or sampler, so this reading is ours, not a reproduction of
    its numbers:
    - the random generator is seeded by the pair alone (blake2b of the UTF-8 JSON of
      [pred, gold]), so a pair gets the same strings in every process and run;
    - the alphabet is RANDOM_ALPHABET: printable ASCII, space included (95 characters);
    - the first half (rounded) are drawn from the gold's language: a length uniform among those
      in m..m+16 at which the gold accepts a string over the alphabet (m: the length of its
      shortest one), then a string uniform among the gold's strings of that length (exact
      counts on its DFA), so `.*dog.*` gives `dog` at any position inside random text;
    - the rest are uniform strings: a length uniform in 0..16, then uniform characters. If the
      gold accepts no string over the alphabet (the empty language: 404 of NL-RX-SYNTH's 2,500
      test golds), all are uniform.
    Strings come from the gold's language, not the prediction's, as a test suite written from the
    reference would: `dog` for gold `truck` scores 0, but a prediction that accepts the gold's
    language plus strings that random text almost never spells scores 1 (`(dog)|(truck)` for gold
    `dog`, or `dog` for the empty gold `#`), and so does one that misses only rare strings
    (`(dog){6,}` for `(dog){7,}`): lenient where dfa_match is strict. When func_match rejects,
    the languages differ, so dfa_match rejects too. func_match_targeted is the
    difference-seeking alternative, which in practice agrees with dfa_match.
    Returns False if `pred` is invalid or over a cap (the caps of dfa_match); raises if `gold` is.
    """
    if num_strings < 1:
        raise ValueError(f"num_strings must be at least 1, got {num_strings}")
    pair = _compile_pair(pred, gold)
    if pair is None:
        return False
    char_class = [pair.partition.class_of(ch) for ch in RANDOM_ALPHABET]
    for word in _random_words(pair, num_strings, _pair_rng(pred, gold)):
        classes = [char_class[i] for i in word]
        if _run(pair.pred, classes) != _run(pair.gold, classes):
            return False
    return True


def func_test_strings_targeted(
    pred: str, gold: str, num_strings: int = 200, seed: int = 0
) -> list[str]:
    """The strings func_match_targeted checks, in order; [] if `pred` is invalid or over a cap."""
    if num_strings < 1:
        raise ValueError(f"num_strings must be at least 1, got {num_strings}")
    pair = _compile_pair(pred, gold)
    if pair is None:
        return []
    reps = pair.partition.representatives
    words = _targeted_words(pair, num_strings, random.Random(seed))
    return ["".join(reps[c] for c in word) for word in words]


def func_match_targeted(pred: str, gold: str, num_strings: int = 200, seed: int = 0) -> bool:
    """Whether `pred` and `gold` agree on `num_strings` seeded strings drawn to expose differences.

    Not the paper's random sampling (that is func_match): the strings are aimed at where the two
    automata differ, so in practice this agrees with dfa_match (on 300 one-edit mutations of
    NL-RX golds it agrees on every pair); it is kept as the bridge between the two. The mix
    (shares of `num_strings`, rounded):
    - 70% walks on the two DFAs that end where a target accepts, the targets cycling 3:3:1:1
      over gold-accepts, prediction-accepts, gold-rejects, prediction-rejects (about 26%, 26%,
      9%, 9%); a target with an empty language hands its turns to the others. With
      probability 3/4 a walk starts from its target's next state of the product DFA in
      breadth-first order (reached by its shortest word) and takes a shortest way to the target,
      choosing among equal ways at random; otherwise it starts empty, takes 0..16 random steps
      that keep the target reachable, then a shortest way to it. The breadth-first start is what
      finds differences between small automata that uniform sampling almost never spells out.
    - 20% near misses: one character inserted, deleted or substituted in a random walk string.
    - 10% uniform random strings of length 0..12, the empty string first.
    Every character is the representative of its partition class, which stands for the whole
    class exactly. Returns False if `pred` is invalid or over a cap; raises if `gold` is.
    """
    if num_strings < 1:
        raise ValueError(f"num_strings must be at least 1, got {num_strings}")
    pair = _compile_pair(pred, gold)
    if pair is None:
        return False
    return all(
        _run(pair.pred, word) == _run(pair.gold, word)
        for word in _targeted_words(pair, num_strings, random.Random(seed))
    )


def startswith_match(output: str, gold: str) -> bool:
    """Whether the raw output, leading whitespace removed, starts with the stripped gold regex.

    The lenient metric Table 14 quotes from LLM-JEPA: no other normalisation (no first-line cut,
    no whitespace collapsing), so trailing text after a correct regex still counts.
    """
    return output.lstrip().startswith(gold.strip())


def accepts(pattern: str, s: str) -> bool:
    """Whether the brics regex `pattern` matches the whole of `s`; raises for an invalid pattern."""
    single = _compile_one(pattern)
    return _run(single.dfa, [single.partition.class_of(ch) for ch in s])


def distinguishing_string(a: str, b: str) -> str | None:
    """A shortest string accepted by exactly one of two regexes, or None if they are equivalent."""
    pair = _compile_pair(a, b)
    if pair is None:
        raise ValueError(f"{a!r} is not a valid regex within this module's caps")
    word = _shortest_difference(pair.pred, pair.gold, pair.partition.num_classes, _Limits(None))
    reps = pair.partition.representatives
    return None if word is None else "".join(reps[c] for c in word)


# ----------------------------------------------------------------------------------------------
# Perturbations for labelled metric checks (tests and benchmarks)

_CLASSES = ("[0-9]", "[a-z]", "[A-Z]", "[A-Za-z]", "[AEIOUaeiou]")
_WORDS = ("dog", "truck", "ring")


def perturb_regex(pattern: str, rng: random.Random) -> str:
    """A one-edit variant of `pattern` (drop a char, flip `*`/`+`, shift a `{n` count, swap a
    class, word or `|`/`&`) for labelled checks; it may be invalid, or even equivalent."""
    spots: dict[str, list[tuple[int, str, str]]] = {"drop": []}  # edit -> (start, old, new)
    if pattern:
        i = rng.randrange(len(pattern))
        spots["drop"].append((i, pattern[i], ""))
    for m in re.finditer(r"[*+]", pattern):
        spots.setdefault("quantifier", []).append((m.start(), m[0], "+" if m[0] == "*" else "*"))
    for m in re.finditer(r"(?<=\{)\d+", pattern):
        new = str(max(0, int(m[0]) + rng.choice((-1, 1))))
        spots.setdefault("count", []).append((m.start(), m[0], new))
    for old in _CLASSES:
        for m in re.finditer(re.escape(old), pattern):
            new = rng.choice([c for c in _CLASSES if c != old])
            spots.setdefault("class", []).append((m.start(), old, new))
    for old in _WORDS:
        for m in re.finditer(old, pattern):
            new = rng.choice([w for w in _WORDS if w != old])
            spots.setdefault("word", []).append((m.start(), old, new))
    for m in re.finditer(r"[|&]", pattern):
        spots.setdefault("operator", []).append((m.start(), m[0], "&" if m[0] == "|" else "|"))
    if not pattern:
        return "."
    start, old, new = rng.choice(spots[rng.choice(sorted(spots))])
    return pattern[:start] + new + pattern[start + len(old) :]
