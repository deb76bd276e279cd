"""Where a generation ends: the stop-id and `until` cuts of the returned text, and the early-exit test.

`cut_text` is what `DiffusionLM.postprocess` does to decoded text; `until_decides` says, from the
committed prefix of a row, whether no later token can change that text, so the sampler may drop the
row (`until_exit_check` is the sampler's `exit_check` callback built on it; see sampler.py). Text in,
text out: the tokenizer arrives as a `decode` function, the special ids as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

Decode = Callable[[list[int]], str]  # ids -> text, special tokens kept (tokenizer.decode, skip_special_tokens=False)


def until_first(ids: list[int], token: int) -> list[int]:
    """`ids` up to (not including) the first `token`; all of them when it does not occur."""
    return ids[: ids.index(token)] if token in ids else ids


def parse_until(until: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """A request's `until` generation kwarg as a list of stop strings.

    Not lm-eval's `handle_stop_sequences`, which also appends the EOS string: the harness cuts at the
    first EOS / EOT id before decoding (the sampler's early exit reads the same ids), so the EOS text is
    no stop string here; as one it would also cut where ordinary tokens happen to spell it.
    """
    if isinstance(until, str):
        return [until]
    if until is None:
        return []
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise ValueError(f"generation kwarg `until` must be a string or a list of strings, got {until!r}")
    return list(until)


def cut_text(text: str, until: Iterable[str], special_tokens: Iterable[str]) -> str:
    """`text` cut at the first occurrence of each `until` string in turn, then stripped of special tokens."""
    for stop in until:
        if stop:
            text = text.split(stop, 1)[0]
    for token in special_tokens:
        text = text.replace(token, "")
    return text


def until_cut_if_decided(stable: str, until: list[str]) -> str | None:
    """What `cut_text`'s `until` loop leaves of every text that begins with `stable`, or None when the
    rest of the text could still change it.

    The loop cuts the text at the first occurrence of each stop string in turn. An occurrence found
    entirely inside `stable` is the first one in any longer text too (an earlier one would end earlier),
    and cuts it to a known string; a stop not found there may still occur across the end of `stable`,
    starting where the rest of `stable` begins the stop, which then stays a known prefix only up to there.
    """
    known = None  # None: `stable` followed by characters not yet generated
    for stop in until:
        if not stop:
            continue
        if known is not None:
            known = known.split(stop, 1)[0]
        elif stop in stable:
            known = stable[: stable.index(stop)]
        else:
            first = max(len(stable) - len(stop) + 1, 0)
            stable = stable[: next((p for p in range(first, len(stable)) if stop.startswith(stable[p:])), len(stable))]
    return known


def until_decides(prefix: list[int], until: list[str], decode: Decode, *, cleans_up_spaces: bool) -> bool:
    """True when the returned text is the same for `prefix` (ids, no stop id) and for every continuation
    of it: an `until` cut inside the text that no later token can move.

    Decoding is taken to be prefix-stable except at the boundary: the text of all tokens but the
    last (less trailing U+FFFD of a split UTF-8 character, and one more character when the tokenizer
    cleans up spaces (`cleans_up_spaces`), which can delete the space before a boundary) must begin
    the text of any continuation; it is checked against the text of `prefix` itself.
    """
    if len(prefix) < 2:
        return False
    stable = decode(prefix[:-1]).rstrip("\ufffd")
    if cleans_up_spaces:
        stable = stable[:-1]
    return decode(prefix).startswith(stable) and until_cut_if_decided(stable, until) is not None


def until_exit_check(
    untils: Sequence[list[str]],
    rows: torch.Tensor,
    generated: torch.Tensor,
    is_done: torch.Tensor,
    *,
    mask_id: int,
    stop_ids: Iterable[int],
    decode: Decode,
    cleans_up_spaces: bool,
) -> torch.Tensor:
    """The sampler's `exit_check` (bind every argument after `untils` first): `is_done` (R,) bool, also True
    for a row whose committed prefix its `until` decides.

    `rows` (R,) long holds each canvas row's index into `untils`; `generated` (R, G) long the canvas
    after the prompt, `mask_id` where nothing is committed yet. One host sync: the strings are text.
    """
    stop_ids = set(stop_ids)
    done = is_done.tolist()
    for r, (row, ids) in enumerate(zip(rows.tolist(), generated.tolist())):
        if done[r] or not any(untils[row]):
            continue
        prefix = until_first(ids, mask_id)
        if not any(tok in stop_ids for tok in prefix):
            done[r] = until_decides(prefix, untils[row], decode, cleans_up_spaces=cleans_up_spaces)
    return torch.tensor(done, dtype=torch.bool, device=is_done.device)
