"""Tests for the NL-RX regex metrics (dk.brics.automaton syntax): parser, DFAs, sampling, caps."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import pytest

from lm_eval_diffusion.metrics import regex as rx
from lm_eval_diffusion.metrics.regex import (
    Chars,
    RegexLimitError,
    RegexSyntaxError,
    accepts,
    dfa_match,
    distinguishing_string,
    exact_match,
    func_match,
    func_test_strings,
    parse,
    perturb_regex,
)

NLRX_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nlrx"
# Per-call bound for hostile predictions; the module's own time backstop is 1 s.
HOSTILE_SECONDS = 2.0


@pytest.fixture(scope="module")
def golds() -> list[str]:
    path = NLRX_DIR / "synth_targ.txt"
    if not path.is_file():
        pytest.skip(f"NL-RX data not found at {path} (expected ../shared/data next to the repo)")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10_000, "NL-RX-SYNTH has 10,000 regexes"
    return lines


def _python_pattern(brics: str) -> str:
    """A brics regex without `&`, `~`, `#`, `@`, `"` as a Python pattern (only `\\b` differs)."""
    return brics.replace("\\b", "b")


# ---------------------------------------------------------------------------------------------
# Real data


def test_every_gold_parses_and_is_dfa_equivalent_to_itself(golds: list[str], monkeypatch) -> None:
    # The 1 s wall-clock cap guards against hostile predictions; a few golds (e.g. `(...){7,}`) take
    # close to it on a loaded 2-core machine, and this test checks the golds, not the machine's load.
    monkeypatch.setattr(rx, "PREDICTION_TIME_LIMIT_S", 30.0)
    not_equal = [g for g in golds if not dfa_match(g, g)]
    assert not_equal == []


def test_golds_are_func_equivalent_to_themselves_on_a_seeded_sample(golds: list[str]) -> None:
    sample = random.Random(0).sample(golds, 500)
    assert [g for g in sample if not func_match(g, g)] == []


def test_accepts_agrees_with_python_re_on_golds_without_brics_operators(golds: list[str]) -> None:
    # An independent oracle: without `&` and `~`, brics syntax is Python's except that `\b` is b.
    plain = [g for g in golds if not set(g) & set("&~#@\"<")]
    assert len(plain) > 5_000
    rng = random.Random(1)
    checked = 0
    for gold in rng.sample(plain, 300):
        other = perturb_regex(gold, rng)
        oracle = re.compile(_python_pattern(gold), re.DOTALL)
        strings = func_test_strings(other, gold, 60) or func_test_strings(gold, gold, 60)
        for s in strings:
            assert accepts(gold, s) == (oracle.fullmatch(s) is not None), (gold, s)
            checked += 1
    assert checked > 10_000


def test_intersection_and_complement_agree_with_their_definitions(golds: list[str]) -> None:
    plain = [g for g in golds if not set(g) & set("&~")]
    rng = random.Random(2)
    for _ in range(100):
        a, b = rng.sample(plain, 2)
        ra, rb = (re.compile(_python_pattern(p), re.DOTALL) for p in (a, b))
        for s in func_test_strings(a, b, num_strings=40) + func_test_strings(b, a, num_strings=40):
            in_a, in_b = ra.fullmatch(s) is not None, rb.fullmatch(s) is not None
            assert accepts(f"({a})&({b})", s) == (in_a and in_b), (a, b, s)
            assert accepts(f"~({a})", s) == (not in_a), (a, s)
            assert accepts(f"({a})|~({b})", s) == (in_a or not in_b), (a, b, s)


def test_gold_with_lookalike_word_boundaries_is_the_empty_language(golds: list[str]) -> None:
    # `\b[A-Z]` & `[AEIOUaeiou]\b`: "b" + capital vs vowel + "b" never meet.
    gold = r"\b([A-Z])&([AEIOUaeiou])\b"
    assert gold in golds
    assert dfa_match("#", gold)
    assert not dfa_match("bA", gold)


def test_labelled_perturbations_func_agrees_with_dfa(golds: list[str]) -> None:
    rng = random.Random(3)
    pairs = [(perturb_regex(g, rng), g) for g in rng.sample(golds, 300)]
    labels = [dfa_match(p, g) for p, g in pairs]
    verdicts = [func_match(p, g) for p, g in pairs]
    func_true_dfa_false = [pair for pair, d, f in zip(pairs, labels, verdicts) if f and not d]
    func_false_dfa_true = [pair for pair, d, f in zip(pairs, labels, verdicts) if d and not f]
    assert func_true_dfa_false == []
    assert func_false_dfa_true == []
    different_but_valid = [(p, g) for (p, g), d in zip(pairs, labels) if not d and _parses(p)]
    assert len(different_but_valid) >= 150, "the labelled set must hold many real differences"
    assert sum(labels) >= 10, "and some equivalent rewrites"
    for pred, gold in different_but_valid:
        witness = distinguishing_string(pred, gold)
        assert witness is not None
        assert accepts(pred, witness) != accepts(gold, witness), (pred, gold, witness)


def _parses(pattern: str) -> bool:
    try:
        parse(pattern)
    except (RegexSyntaxError, RegexLimitError):
        return False
    return True


# ---------------------------------------------------------------------------------------------
# Hand-checked equivalences and differences

EQUIVALENT = [
    ("(dog)|(truck)", "(truck)|(dog)"),
    ("(dog){2,}", "dogdog(dog)*"),
    ("([a-z]){2,}", "[a-z][a-z]([a-z])*"),
    ("(.*[0-9].*){2,}", ".*[0-9].*.*[0-9].*(.*[0-9].*)*"),
    ("[0-9]", "(0|1|2|3|4|5|6|7|8|9)"),
    ("(a)*", "(a*)*"),
    ("[A-Za-z]", "[A-Z]|[a-z]"),
    ("(.*[0-9].*)&(.*[a-z].*)", "(.*[0-9].*[a-z].*)|(.*[a-z].*[0-9].*)"),
    ("~(.*dog.*)&~(.*truck.*)", "~(.*((dog)|(truck)).*)"),
    ("x{2,3}", "xx(x)?"),
    ("[^a]", ".&~a"),
    ("@", ".*"),
    ('"a|b"', r"a\|b"),
    ("()", '""'),
]

DIFFERENT = [
    (".*dog.*", "dog.*", "!dog"),
    ("[a-z]", "[A-Z]", "A"),
    ("(.*[0-9].*)&(.*[a-z].*)", "(.*[0-9].*)|(.*[a-z].*)", "0"),
    ("x{2,3}", "x{2,4}", "xxxx"),
    ("~(.*dog.*)", "~(.*truck.*)", "dog"),
    ("(dog){6,}", "(dog){7,}", "dogdogdogdogdogdog"),
]


@pytest.mark.parametrize(("a", "b"), EQUIVALENT)
def test_equivalent_pairs(a: str, b: str) -> None:
    assert dfa_match(a, b) and dfa_match(b, a)
    assert func_match(a, b) and func_match(b, a)
    assert distinguishing_string(a, b) is None


@pytest.mark.parametrize(("a", "b", "witness"), DIFFERENT)
def test_different_pairs(a: str, b: str, witness: str) -> None:
    assert not dfa_match(a, b) and not dfa_match(b, a)
    assert not func_match(a, b) and not func_match(b, a)
    assert accepts(a, witness) != accepts(b, witness)
    found = distinguishing_string(a, b)
    assert found is not None and len(found) == len(witness)  # a shortest one, maybe another
    assert accepts(a, found) != accepts(b, found)


def test_double_complement_of_data_regexes(golds: list[str]) -> None:
    for gold in golds[:50]:
        assert dfa_match(f"~(~({gold}))", gold), gold
        assert not dfa_match(f"~({gold})", gold), gold


# ---------------------------------------------------------------------------------------------
# Semantics: literal \b, whole-string match, precedence, brics quirks


def test_backslash_b_is_the_letter_b() -> None:
    assert accepts(r"\bdog", "bdog")
    assert not accepts(r"\bdog", "dog")
    assert accepts(r"\bdog\b", "bdogb")
    assert not accepts(r"\bdog\b", "dog")
    assert dfa_match(r"\bdog\b", "bdogb")
    assert accepts(r"\.", ".") and not accepts(r"\.", "x")


def test_whole_string_match() -> None:
    assert accepts("dog", "dog")
    assert not accepts("dog", "dogs")
    assert not accepts("dog", "hotdog")
    assert accepts(".*dog.*", "hotdogs")


@pytest.mark.parametrize(
    ("pattern", "accepted", "rejected"),
    [
        ("a|b&c", ["a"], ["b", "c", "bc"]),  # a | (b & c), and b & c is empty
        ("a&b|c", ["c"], ["a", "b"]),  # (a & b) | c
        ("ab*", ["a", "abbb"], ["abab", "b"]),  # a (b*)
        ("~ab", ["b", "xb", "aab"], ["ab", "a", ""]),  # (~a) b: any string but "a", then b
        ("ab{2}", ["abb"], ["abab", "ab"]),  # a (b{2})
        ("~a*", ["", "aa", "b"], ["a"]),  # (~a)*
        ("dog|truck", ["dog", "truck"], ["dogtruck"]),
        ("(.*[0-9].*)&(.*[a-z].*)", ["a1", "1a", "x9y"], ["a", "1", "A1"]),
        (".", ["\n", "é", "\U0001F600"], ["", "ab"]),
    ],
)
def test_precedence_and_single_strings(
    pattern: str, accepted: list[str], rejected: list[str]
) -> None:
    for s in accepted:
        assert accepts(pattern, s), (pattern, s)
    for s in rejected:
        assert not accepts(pattern, s), (pattern, s)


def test_precedence_against_explicit_grouping() -> None:
    assert dfa_match("a|b&c", "a|(b&c)") and not dfa_match("a|b&c", "(a|b)&c")
    assert dfa_match("ab*", "a(b*)") and not dfa_match("ab*", "(ab)*")
    assert dfa_match("~ab", "(~a)b") and not dfa_match("~ab", "~(ab)")
    assert dfa_match("ab{2}", "a(b{2})") and not dfa_match("ab{2}", "(ab){2}")
    assert dfa_match("~a*", "(~a)*") and not dfa_match("~a*", "~(a*)")


@pytest.mark.parametrize(
    ("pattern", "accepted", "rejected"),
    [
        ("*a", ["*a"], ["a", ""]),  # a reserved char where an atom is expected is a literal
        ("a|)", ["a", ")"], [""]),
        ("[]a]", ["]", "a"], ["[", ""]),
        ("[a-]", ["a", "-"], ["b"]),
        ("[^a]", ["b", "\n"], ["a", "", "bb"]),
        ("[z-a]", [], ["a", "z", ""]),  # a reversed range is the empty set
        ("a{3,2}", [], ["aa", "aaa", ""]),  # so is a reversed count
        ("a{0}", [""], ["a"]),
        ("()", [""], ["a"]),
        ("", [""], ["a"]),
        ('"a|b"', ["a|b"], ["a", "b"]),
        ("#", [], ["", "#"]),
        ("@", ["", "@", "anything"], []),
        ("a?b+", ["b", "abb"], ["a", "aab"]),
        ("[a-c]{2}", ["ab", "cc"], ["a", "ad", "abc"]),
    ],
)
def test_brics_quirks(pattern: str, accepted: list[str], rejected: list[str]) -> None:
    for s in accepted:
        assert accepts(pattern, s), (pattern, s)
    for s in rejected:
        assert not accepts(pattern, s), (pattern, s)


def test_parse_builds_the_expected_ast() -> None:
    d, o, g = (Chars(((ord(c), ord(c)),)) for c in "dog")
    assert parse("dog") == rx.Concat((d, o, g))
    assert parse("((dog))") == rx.Concat((d, o, g))
    assert parse("~d*") == rx.Repeat(rx.Complement(d), 0, None)
    assert parse("d|o&g") == rx.Union((d, rx.Intersection((o, g))))
    assert parse("[^a]") == Chars(((0, 96), (98, rx.MAX_CODE_POINT)))
    assert parse("d{2,}") == rx.Repeat(d, 2, None)


@pytest.mark.parametrize(
    ("pattern", "position"),
    [
        ("((a", 3),
        ("a)", 1),
        ("[a", 2),
        ("[a-", 3),
        ("a{", 2),
        ("a{2", 3),
        ("a{,3}", 2),
        ("\\", 1),
        ("a|", 2),
        ("(", 1),
        ("~", 1),
        ('"abc', 4),
        ("<1-10>", 0),
    ],
)
def test_syntax_errors_carry_positions(pattern: str, position: int) -> None:
    with pytest.raises(RegexSyntaxError) as info:
        parse(pattern)
    assert info.value.position == position
    assert isinstance(info.value, ValueError)


def test_parser_is_iterative_for_10000_nested_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rx, "MAX_PATTERN_CHARS", 100_000)
    assert parse("(" * 10_000 + "a" + ")" * 10_000) == Chars(((97, 97),))
    with pytest.raises(RegexSyntaxError):
        parse("(" * 10_000 + "a")
    with pytest.raises(RegexLimitError):
        parse("~(" * 5_000 + "a" + ")" * 5_000)
    with pytest.raises(RegexLimitError):
        parse("(" * 5_000 + "a" + ")*" * 5_000)


# ---------------------------------------------------------------------------------------------
# Hostile predictions

HOSTILE = {
    "unbalanced_open": "((a",
    "unbalanced_close": "a)",
    "unclosed_class": "[0-9",
    "huge_min_count": "a{100000,}",
    "huge_exact_count": "(a){1000000}",
    "digit_flood": "a{" + "9" * 5_000 + "}",
    "nesting_10000": "(" * 10_000 + "a" + ")" * 10_000,
    "open_10000": "(" * 10_000,
    "chars_10000": "ab" * 5_000,
    "complement_chain": "~" * 999 + "a",
    "complement_nesting": "~(" * 200 + "a" + ")" * 200,
    "star_chain": "a" + "*" * 500,
    "dfa_explosion": "(.*a.{20})",
    "dfa_explosion_complement": "~(.*[a-z].{20})",
    "intersection_explosion": "&".join(f"(.*{c}.*)" for c in "abcdefghijklmnopqrst"),
    "nested_counts": "((a{1000}){1000}){1000}",
    "long_counts": "(.{1000}){1000}",
    "many_classes": "".join(chr(0x100 + i) for i in range(999)),
    "named_automaton": "<x>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_predictions_score_zero_quickly(name: str) -> None:
    pred = HOSTILE[name]
    gold = "(.*[0-9].*)&(.*[a-z].*)"
    for metric in (dfa_match, func_match, exact_match):
        rx._compile_pair.cache_clear()  # time the full work, not a cached verdict
        start = time.perf_counter()
        verdict = metric(pred, gold)
        elapsed = time.perf_counter() - start
        assert verdict is False, (name, metric.__name__)
        assert elapsed < HOSTILE_SECONDS, (name, metric.__name__, elapsed)


def test_a_prediction_alphabet_cannot_make_the_gold_raise() -> None:
    # 999 distinct characters make ~1,000 partition classes; the gold's 512-state DFA over them
    # exceeds MAX_WORK, which must count against the prediction, not raise as a bad gold.
    pred = HOSTILE["many_classes"]
    gold = ".*[0-9].{8}"
    for metric in (dfa_match, func_match):
        rx._compile_pair.cache_clear()
        start = time.perf_counter()
        assert metric(pred, gold) is False
        assert time.perf_counter() - start < HOSTILE_SECONDS
    assert dfa_match("(.*[0-9]).{8}", gold)


def test_over_cap_prediction_fails_even_when_equivalent(monkeypatch: pytest.MonkeyPatch) -> None:
    pred = "(.*a.{5})|~(.*a.{5})"  # all strings, through two 64-state DFAs
    assert dfa_match(pred, ".*")
    monkeypatch.setattr(rx, "MAX_DFA_STATES", 40)
    rx._compile_pair.cache_clear()
    rx._compile_one.cache_clear()
    assert not dfa_match(pred, ".*")
    assert not func_match(pred, ".*")
    with pytest.raises(RegexLimitError):  # the same regex as gold is a dataset problem
        dfa_match(".*", pred)


def test_invalid_gold_raises() -> None:
    with pytest.raises(RegexSyntaxError):
        dfa_match("a", "((a")
    with pytest.raises(RegexSyntaxError):
        func_match("a", "[a")
    with pytest.raises(RegexLimitError):
        func_match("a", "a{5000}")


# ---------------------------------------------------------------------------------------------
# func_match sampling mix, exact_match


def test_func_test_strings_follow_the_documented_mix() -> None:
    gold, pred = ".*dog.*", "dog.*"
    strings = func_test_strings(pred, gold)
    assert len(strings) == 200
    assert "" in strings
    assert strings == func_test_strings(pred, gold), "seeded, so deterministic"
    assert strings != func_test_strings(pred, gold, seed=1)
    # The 140 walks cycle over gold+, pred+, gold+, pred+, gold+, pred+, gold-, pred-.
    walks = strings[:140]
    gold_accepted = [s for i, s in enumerate(walks) if i % 8 in (0, 2, 4)]
    pred_accepted = [s for i, s in enumerate(walks) if i % 8 in (1, 3, 5)]
    gold_rejected = [s for i, s in enumerate(walks) if i % 8 == 6]
    pred_rejected = [s for i, s in enumerate(walks) if i % 8 == 7]
    assert (len(gold_accepted), len(pred_accepted), len(gold_rejected)) == (53, 53, 17)
    assert all(accepts(gold, s) for s in gold_accepted)
    assert all(accepts(pred, s) for s in pred_accepted)
    assert not any(accepts(gold, s) for s in gold_rejected)
    assert not any(accepts(pred, s) for s in pred_rejected)
    assert any(accepts(gold, s) != accepts(pred, s) for s in strings)


def test_func_match_with_an_empty_language_side() -> None:
    assert func_match("#", "[a-z]&[0-9]")
    assert not func_match("#", "dog")
    assert not func_match("dog", "#")
    assert len(func_test_strings("#", "dog", num_strings=50)) == 50


def test_func_match_rejects_a_bad_sample_size() -> None:
    with pytest.raises(ValueError):
        func_match("a", "a", num_strings=0)


def test_exact_match_ignores_whitespace_only() -> None:
    assert exact_match(" ( dog ) . *\n", "(dog).*")
    assert exact_match("a b", "ab")
    assert not exact_match("(dog)", "(dgo)")
    assert not exact_match("(dog)|(truck)", "(truck)|(dog)")  # equivalent, but not the same text
