"""Django code-generation metrics: whitespace- and tokenisation-insensitive match, and a stopping breakdown.

The Django release stores each code line space-tokenised (`foo ( bar , 1 )`) with meaningless leading
indentation, while a model may write `foo(bar, 1)`. Both sides are therefore cut into Python-like
tokens and re-joined with single spaces (`ws_normalise`), so the two spellings compare equal:

- a string literal (single, double or triple quoted, with r/b/u/f prefixes) is one token, kept verbatim
  (its inner spaces are content, not layout);
- a number (`12`, `1.5`, `.5`, `1e-5`) or an identifier/keyword (`\\w+`, so `0x1F` and `10L` too) is one token;
- the multi-character operators (`**=`, `//=`, `>>=`, `<<=`, `...`, `->`, `**`, `//`, `==`, `!=`, `<=`,
  `>=`, `<>`, `<<`, `>>`, `+=`, `-=`, `*=`, `/=`, `%=`, `&=`, `|=`, `^=`, `@=`, `:=`) are one token each;
- any other non-space character is a token by itself; whitespace only separates tokens.

Outcomes partition: exactly one of exact_match, stop_artifact (the correct code, then trailing tokens),
content_error (the prediction does not start with the gold tokens) is 1. ws_prefix_match is
exact_match or stop_artifact. "Starts with" is token-wise, so `x = 10` does not start with `x = 1`.
A missing output (None) counts as empty; a missing or empty gold is a data error and raises.
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


def exact_match(pred: str | None, gold: str) -> bool:
    """Whether prediction and gold have the same tokens (equal after `ws_normalise`)."""
    return code_tokens(pred) == _gold_tokens(gold)


def ws_prefix_match(pred: str | None, gold: str) -> bool:
    """Whether the prediction's tokens start with all of the gold's tokens (correct code, maybe more after)."""
    gold_tokens = _gold_tokens(gold)
    return code_tokens(pred)[: len(gold_tokens)] == gold_tokens


def stop_breakdown(pred: str | None, gold: str) -> dict[str, int]:
    """{"stop_artifact": 1 if correct code then trailing text, "content_error": 1 if not even a prefix match}."""
    gold_tokens = _gold_tokens(gold)
    pred_tokens = code_tokens(pred)
    is_prefix = pred_tokens[: len(gold_tokens)] == gold_tokens
    return {
        "stop_artifact": int(is_prefix and len(pred_tokens) > len(gold_tokens)),
        "content_error": int(not is_prefix),
    }
