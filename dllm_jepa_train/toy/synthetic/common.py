"""Shared pieces of the synthetic data: dataset sizes, unique and held-out-first drawing, split bounds.

Every task module draws its items through these helpers; the held-out rules they implement (held-out
items unique, never in training or the text corpus, at most half of each template held out) are
described in the package docstring.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from lm_eval_diffusion.task_data import DJANGO_NUM_LINES, django_split_range, nlrx_split_indices

# Sizes at scale 1.0, and the floors that keep scale=0.1 usable for fast tests.
DEFAULT_SIZES: dict[str, int] = {
    "gsm8k_train": 2000,
    "gsm8k_test": 200,
    "spider_dev": 120,
    "spider_train": 500,
    "nlrx": 800,
    "django": 1400,
    "text_train": 8000,
    "text_valid": 300,
}
MIN_SIZES: dict[str, int] = {
    "gsm8k_train": 50,
    "gsm8k_test": 20,
    "spider_dev": 40,
    "spider_train": 60,
    "nlrx": 100,
    "django": 100,
    "text_train": 100,
    "text_valid": 20,
}

# The real Django split is by line order over 18,805 lines: 0-15999 train, 16000-16999 dev, rest test.
DJANGO_REAL_NUM_LINES = DJANGO_NUM_LINES

# Bounded retries when drawing unique items; a template space too small for the request raises.
_MAX_DRAWS_PER_ITEM = 50


def django_split_bounds(n_lines: int) -> tuple[range, range, range]:
    """(train, dev, test) line ranges: the standard 0-15999 / 16000-16999 / 17000-18804 for the real
    18,805 lines, the same fractions otherwise; the task loader's rule, so both always agree."""
    return tuple(django_split_range(split, n_lines) for split in ("train", "validation", "test"))


def _scaled(name: str, scale: float) -> int:
    return max(MIN_SIZES[name], round(DEFAULT_SIZES[name] * scale))


def _draw_unique(draw: Callable[[], tuple[str, ...]], n: int, taken: set[str], what: str) -> list[tuple[str, ...]]:
    """Call `draw` until n items whose first field is not in `taken`; adds those fields to `taken`."""
    items: list[tuple[str, ...]] = []
    for _ in range(n * _MAX_DRAWS_PER_ITEM):
        if len(items) == n:
            return items
        item = draw()
        if item[0] not in taken:
            taken.add(item[0])
            items.append(item)
    if len(items) == n:
        return items
    raise ValueError(f"only {len(items)} unique {what} items from the templates, {n} requested; lower scale")



# Candidate draws per held-out item when choosing the held-out set (see _draw_held_out_first).
_HELD_OUT_POOL_DRAWS = 10

_Item = tuple  # a drawn item; its first field is the key that must not repeat across the split


def _draw_held_out_first(draw: Callable[[], _Item], stratum: Callable[[_Item], object], n_held_out: int,
                         n_train: int, what: str, rng: random.Random) -> tuple[list[_Item], list[_Item]]:
    """(held-out items, training items): the held-out items are unique; training items never share a
    first field with any of them but may repeat each other, as lines of the real releases do.

    Held-out items are the first distinct draws, as a test split drawn like the training split would
    be, except that no template (`stratum`) gives up more than half of its distinct lines, counted in
    a pool of _HELD_OUT_POOL_DRAWS * n_held_out draws. Without the cap the held-out items used up the
    small templates (a dozen lines each) entirely, and training never showed them with most of their
    slot values. So a test item is a new combination of parts that training shows, in the same
    template too. Raises ValueError when the capped pool holds fewer than n_held_out items.
    """
    pool: dict[str, _Item] = {}
    for _ in range(_HELD_OUT_POOL_DRAWS * n_held_out):
        item = draw()
        pool.setdefault(item[0], item)  # in order of first draw
    sizes = Counter(stratum(item) for item in pool.values())
    taken: Counter = Counter()
    held_out: list[_Item] = []
    for item in pool.values():
        key = stratum(item)
        if taken[key] < sizes[key] // 2:
            taken[key] += 1
            held_out.append(item)
            if len(held_out) == n_held_out:
                break
    if len(held_out) < n_held_out:
        raise ValueError(f"only {len(held_out)} distinct {what} items can be held out (at most half of each "
                         f"template's), {n_held_out} requested; lower scale")
    rng.shuffle(held_out)  # the capped templates fill first: mix them through the dev and test parts
    keys = {item[0] for item in held_out}
    train: list[_Item] = []
    for _ in range(n_train * _MAX_DRAWS_PER_ITEM):
        if len(train) == n_train:
            return held_out, train
        item = draw()
        if item[0] not in keys:
            train.append(item)
    raise ValueError(f"only {len(train)} {what} training items outside the held-out ones; lower scale")



def _held_out_keys(out: Path) -> set[str]:
    """The input of every evaluation item just written (GSM8K test, Spider dev, NL-RX validation and
    test, Django dev and test), which the text corpus must never contain; training items it may."""
    keys = {json.loads(line)["question"]
            for line in (out / "gsm8k" / "test.jsonl").read_text(encoding="utf-8").splitlines()}
    keys.update(r["question"] for r in json.loads((out / "spider" / "dev.json").read_text(encoding="utf-8")))
    nlrx = (out / "nlrx" / "synth_src.txt").read_text(encoding="utf-8").split("\n")
    split = nlrx_split_indices(len(nlrx))
    keys.update(nlrx[i] for name in ("validation", "test") for i in split[name])
    django = (out / "django" / "all.anno").read_text(encoding="utf-8").splitlines()
    keys.update(line.strip() for line in django[django_split_bounds(len(django))[0].stop:])
    return keys
