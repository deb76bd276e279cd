"""Django code metrics and GSM8K extraction: hand-checked cases, lm-eval parity, hostile inputs."""

from __future__ import annotations

import re
import time

import pytest

from lm_eval_diffusion.metrics import code, gsm8k

# ------------------------------------------------------------------------------------------- code


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("foo(bar)", "foo ( bar )"),
        ("   foo ( bar )  \t", "foo ( bar )"),
        ("x==1", "x == 1"),
        ("x = = 1", "x = = 1"),  # two `=` are not `==`
        ("a**=2;b//c", "a **= 2 ; b // c"),
        ("def f(**kw)->None:", "def f ( ** kw ) -> None :"),
        ('print("a  b")', 'print ( "a  b" )'),  # spaces inside a string are content
        ("r'\\d+'+b'x'", "r'\\d+' + b'x'"),
        ("'''doc\n  x'''+1", "'''doc\n  x''' + 1"),
        ("1.5e-3+.5+0x1F+10", "1.5e-3 + .5 + 0x1F + 10"),
        ("self._caches[k]", "self . _caches [ k ]"),
        ("x = [ ]", "x = [ ]"),
        ("", ""),
        (None, ""),
    ],
)
def test_ws_normalise_hand_checked(raw, normalised):
    assert code.ws_normalise(raw) == normalised


def test_ws_normalise_unicode_and_unterminated_string():
    assert code.ws_normalise("naïve=\"ünï  code\"") == 'naïve = "ünï  code"'
    # An unterminated quote is a lone token; the rest still tokenises.
    assert code.ws_normalise('x = "abc') == 'x = " abc'


def _partition(exact: int, stop: int, content: int) -> dict[str, int]:
    return {"exact_match": exact, "ws_prefix_match": exact + stop, "stop_artifact": stop, "content_error": content}


def test_compact_spelling_is_a_ws_prefix_match_but_not_strict():
    gold = "  return [ source [ 0 ] ] , [ params ]"
    assert code.ws_prefix_match("return [source[0]], [params]", gold)
    assert not code.exact_match("return [source[0]], [params]", gold)
    assert code.outcome("return [source[0]], [params]", gold) == _partition(0, 1, 0)
    # The gold as released, leading indentation and trailing newline stripped, is strict.
    assert code.outcome("\n return [ source [ 0 ] ] , [ params ]\n\n", gold) == _partition(1, 0, 0)


@pytest.mark.parametrize(
    ("pred", "expected"),
    [
        ("x = foo ( 1 )", _partition(1, 0, 0)),  # the gold
        ("  x = foo ( 1 )  \n", _partition(1, 0, 0)),  # surrounding whitespace only
        ("x = foo ( 1 )\ny = 2", _partition(0, 1, 0)),  # Table 5: correct code + trailing tokens
        ("x = foo ( 1 ) # done", _partition(0, 1, 0)),
        ("x  =  foo ( 1 )", _partition(0, 1, 0)),  # whitespace-only difference: documented as stop_artifact
        ("x = foo(1)", _partition(0, 1, 0)),
        ("x = foo ( 2 )", _partition(0, 0, 1)),
        ("x = foo ( 10 )", _partition(0, 0, 1)),  # token-wise: 10 is not 1
        ("x = foo (", _partition(0, 0, 1)),  # a truncated answer is not a prefix match
        ("", _partition(0, 0, 1)),
        (None, _partition(0, 0, 1)),
    ],
)
def test_paper_partition_hand_checked(pred, expected):
    assert code.outcome(pred, "x = foo ( 1 )") == expected


def test_prefix_is_token_wise_not_character_wise():
    assert not code.ws_prefix_match("x = 10", "x = 1")
    assert code.outcome("x = 10", "x = 1")["content_error"] == 1
    assert not code.ws_prefix_match("result_args = 1", "result = 1")


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("x = 1", "x = 1"),
        ("x=1 # trailing", "x = 1"),
        ("y = 1", "x = 1"),
        ("", "x = 1"),
        (None, "x = 1"),
        ("x", "x = 1"),
        ("x = 1" * 1000, "x = 1"),
        ("\tx = 1\n", "x = 1"),
    ],
)
def test_outcomes_partition(pred, gold):
    out = code.outcome(pred, gold)
    assert out["exact_match"] + out["stop_artifact"] + out["content_error"] == 1
    assert out["exact_match"] + out["stop_artifact"] == out["ws_prefix_match"] == int(code.ws_prefix_match(pred, gold))
    assert out["exact_match"] == int(code.exact_match(pred, gold))


@pytest.mark.parametrize("gold", ["", "   \n\t", None, 3])
def test_empty_or_non_string_gold_raises(gold):
    with pytest.raises((ValueError, TypeError)):
        code.ws_prefix_match("pass", gold)


def test_huge_hostile_prediction_is_linear_time():
    hostile = ("'" + "a" * 1000 + '"') * 1000 + '"""' + "x" * 200_000  # unterminated quotes everywhere
    start = time.perf_counter()
    out = code.outcome(hostile, "pass")
    assert time.perf_counter() - start < 5.0
    assert out == _partition(0, 0, 1)


# ------------------------------------------------------------------------------------------ gsm8k

GOLD = "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18"


@pytest.mark.parametrize(
    ("output", "strict", "flexible"),
    [
        ("She makes 18 dollars.\n#### 18", True, True),
        ("#### 18\nQuestion: more 7", True, False),  # flexible takes the *last* number
        ("The answer is 18.", False, True),
        ("The answer is $18.", False, True),
        ("#### 1,8", True, True),  # commas are dropped on both sides, as in lm-eval
        ("#### 18.00", False, False),  # no numeric parsing, as in lm-eval
        ("#### -18", False, False),
        ("no digits at all", False, False),
        ("", False, False),
        (None, False, False),
        ("#### eighteen", False, False),
        ("#### １８", False, False),  # full-width digits are not ASCII digits
    ],
)
def test_gsm8k_score_hand_checked(output, strict, flexible):
    assert gsm8k.score(output, GOLD) == {"strict": strict, "flexible": flexible}


def test_gsm8k_extractions():
    assert gsm8k.extract_strict("so #### 1,234.") == "1234"
    assert gsm8k.extract_strict("#### 5 and #### 6") == "5"  # the first marker
    assert gsm8k.extract_flexible("costs $1,234.50 total, 7 left") == "7"
    assert gsm8k.extract_flexible("costs $1,234.50 total.") == "1234.50"
    assert gsm8k.extract_flexible("x") == gsm8k.INVALID
    assert gsm8k.gold_number(GOLD) == "18"
    assert gsm8k.gold_number("1,000") == "1000"


def test_gsm8k_invalid_never_matches():
    assert not gsm8k.is_correct(gsm8k.INVALID, "[invalid]")
    assert not gsm8k.is_correct("", "#### ")


def test_gsm8k_gold_must_be_text():
    with pytest.raises(TypeError):
        gsm8k.score("#### 1", None)


def _lm_eval_pipeline(output: str, gold: str, pattern: str, group_select: int) -> bool:
    """lm-eval's own gsm8k filter + exact_match, as its gsm8k.yaml configures them."""
    from lm_eval.api.metrics import exact_match_hf_evaluate
    from lm_eval.filters.extraction import RegexFilter

    extracted = RegexFilter(regex_pattern=pattern, group_select=group_select).apply([[output]], [{}])[0][0]
    result = exact_match_hf_evaluate(
        predictions=[extracted],
        references=[gold],
        ignore_case=True,
        ignore_punctuation=False,
        regexes_to_ignore=[",", "\\$", "(?s).*#### ", "\\.$"],
    )
    return result["exact_match"] == 1.0


@pytest.mark.parametrize(
    "output",
    [
        "She makes 18 dollars.\n#### 18",
        "#### 18\nQuestion: 7",
        "The answer is $18.",
        "#### 1,8",
        "#### 18.00",
        "total 9 then 18",
        "nothing",
        "#### 18 #### 19",
        "-18 or 18..",
    ],
)
def test_gsm8k_matches_lm_eval_filters(output):
    ours = gsm8k.score(output, GOLD)
    assert ours["strict"] == _lm_eval_pipeline(output, GOLD, r"#### (\-?[0-9\.\,]+)", 0)
    assert ours["flexible"] == _lm_eval_pipeline(output, GOLD, r"(-?[$0-9.,]{2,})|(-?[0-9]+)", -1)


def test_gsm8k_huge_output_is_fast():
    output = ("1 " * 500_000) + "#### 18"
    start = time.perf_counter()
    assert gsm8k.score(output, GOLD) == {"strict": True, "flexible": True}
    assert time.perf_counter() - start < 5.0
    assert re.fullmatch(r"\d+", gsm8k.extract_flexible("9" * 100_000))
