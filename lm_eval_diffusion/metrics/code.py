"""Django code-generation metrics: strict exact match, token-wise prefix match, and the paper's stopping partition.

The Django release stores each code line space-tokenised (`foo ( bar , 1 )`) with meaningless leading
indentation, while a model may write `foo(bar, 1)`. The prefix match therefore cuts both sides into
Python-like tokens (`code_tokens`; `ws_normalise` re-joins them with single spaces), so the two
spellings compare equal:

- a string literal (single, double or triple quoted, with r/b/u/f prefixes) is one token, kept verbatim
  (its inner spaces are content, not layout);
- a number (`12`, `1.5`, `.5`, `1e-5`) or an identifier/keyword (`\\w+`, so `0x1F` and `10L` too) is one token;
- the multi-character operators (`**=`, `//=`, `>>=`, `<<=`, `...`, `->`, `**`, `//`, `==`, `!=`, `<=`,
  `>=`, `<>`, `<<`, `>>`, `+=`, `-=`, `*=`, `/=`, `%=`, `&=`, `|=`, `^=`, `@=`, `:=`) are one token each;
- any other non-space character is a token by itself; whitespace only separates tokens.

The paper's partition of one generation (Table 5), computed on the raw output (the task generates
until end of text, so trailing tokens stay in):

- exact_match (strict): the output, surrounding whitespace stripped, equals the gold as released
  (space-tokenised, surrounding whitespace stripped), character for character;
- ws_prefix_match (Table 2): the output's tokens start with all of the gold's tokens ("correct code,
  maybe followed by more"); token-wise, so `x = 10` does not start with `x = 1`;
- stop_artifact: ws_prefix_match but not exact_match ("correct code + trailing tokens");
- content_error: not ws_prefix_match.

exact_match + stop_artifact + content_error = 1 for every output, and exact_match + stop_artifact =
ws_prefix_match (the paper's "reasoning-correct total"). Because ws_prefix_match ignores layout,
whitespace-only and tokenisation-only differences (`foo(bar)` for `foo ( bar )`, a doubled space) land in
stop_artifact, not in exact_match. A missing output (None) counts as empty; a missing or empty gold is
a data error and raises.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(
    r"""
    [rRbBuUfF]{0,2}(?:'''(?:[^\\]|\\.)*?'''|\"\"\"(?:[^\\]|\\.)*?\"\"\")  # triple-quoted string
  | [rRbBuUfF]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")          # one-line string
  | \d+\.\d*(?:[eE][+-]?\d+)?[jJ]? | \.\d+(?:[eE][+-]?\d+)?[jJ]?        # float
  | \d+[eE][+-]?\d+[jJ]?                                               # float without a dot
  | \w+                                                                # name, keyword, integer
  | \*\*= | //= | >>= | <<= | \.\.\. | ->
  | \*\* | // | == | != | <= | >= | <> | << | >> | [-+*/%&|^@:]=
  | \S                                                                 # anything else, alone
    """,
    re.VERBOSE | re.DOTALL,
)


def code_tokens(text: str | None) -> list[str]:
    """Python-like tokens of `text` (see the module docstring); None gives no tokens."""
    if text is None:
        return []
    return _TOKEN.findall(text)


def ws_normalise(text: str | None) -> str:
    """`text` as its tokens joined by single spaces: `foo(bar)` and `  foo ( bar ) ` both give `foo ( bar )`."""
    return " ".join(code_tokens(text))


def _gold_tokens(gold: str) -> list[str]:
    if not isinstance(gold, str):
        raise TypeError(f"gold code must be a string, got {type(gold).__name__}")
    tokens = code_tokens(gold)
    if not tokens:
        raise ValueError("gold code is empty: every prediction would 'start with' it")
    return tokens


def _gold_text(gold: str) -> str:
    _gold_tokens(gold)  # the same validation as the token-wise metrics
    return gold.strip()


def exact_match(pred: str | None, gold: str) -> bool:
    """Strict exact match: `pred` with surrounding whitespace stripped equals the stripped gold, verbatim."""
    return (pred or "").strip() == _gold_text(gold)


def ws_prefix_match(pred: str | None, gold: str) -> bool:
    """Whether the prediction's tokens start with all of the gold's tokens (correct code, maybe more after)."""
    gold_tokens = _gold_tokens(gold)
    return code_tokens(pred)[: len(gold_tokens)] == gold_tokens


def outcome(pred: str | None, gold: str) -> dict[str, int]:
    """The paper's partition of one output: exact_match, stop_artifact, content_error (one of them is 1)
    and ws_prefix_match (= exact_match + stop_artifact)."""
    is_exact = exact_match(pred, gold)
    is_prefix = ws_prefix_match(pred, gold)
    return {
        "exact_match": int(is_exact),
        "ws_prefix_match": int(is_prefix),
        "stop_artifact": int(is_prefix and not is_exact),
        "content_error": int(not is_prefix),
    }
