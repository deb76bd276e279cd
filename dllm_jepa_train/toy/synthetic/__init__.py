"""Small synthetic task datasets in the exact on-disk layout of the real data directory.

The demo must run on a fresh machine without network, so this module writes stand-ins for the four
task datasets of the paper (GSM8K, Spider, NL-RX-Synth, Django) plus a plain-text corpus, with the same
file names, formats and record schemas as `../shared/data`. The task loaders that read the real
directory read this one unchanged. Everything is drawn from templates with a seeded `random.Random`
per dataset, so the same seed gives byte-identical files.

Smallest run (CPU, about a second):

    python -m dllm_jepa_train.toy.synthetic --out /tmp/synthetic_data --seed 0 --scale 0.1

Layout written under `out_dir`:

    README.md
    gsm8k/train.jsonl, gsm8k/test.jsonl          {"question", "answer"}; answer ends in "#### N"
    spider/dev.json, spider/train_spider.json    Spider records (db_id, query, query_toks, ...)
    spider/tables.json                           Spider schemas for the generated databases
    spider/database/<db_id>/<db_id>.sqlite       demo_shop and demo_school
    nlrx/synth_src.txt, nlrx/synth_targ.txt      aligned description / dk.brics regex lines
    django/all.anno, django/all.code             aligned pseudo-code / space-tokenised Python lines
    text/train.txt, text/valid.txt               one document per line, disjoint sets of lines

What is mirrored from the real files: JSON serialisation (json.dumps defaults per GSM8K line, indent 4
for dev.json, indent 3 for tables.json, no final newline), no final newline in the NL-RX files, two
leading spaces on Django annotations and uneven leading spaces on code lines, Spider's query spacing
(' ,  ', '  =  ') and token lists, and the NL-RX release's phrasing and dk.brics bracketing per rule.

Deviations from the real data, all deliberate: the data is shaped so that a tiny model learns it in a
CPU demo's minutes. Every task is drawn from a small table of templates (GSM8K_TEMPLATES, _RX_FORMS,
_DJANGO_TEMPLATES, SPIDER_TEMPLATES) whose slots each take a value from a short closed list of its own
kind (a digit, a character class, a string, a variable, a table, a city ...), so a test item is a new
combination of parts the training split has seen, and an answer token is found in the question by what
it is rather than where it stands (measured: a 4-layer width-128 model trained on one such task alone
copies its slots after several hundred steps; copying by position alone, or from an open vocabulary,
took thousands of steps in our trials):
- Held-out items (GSM8K test, Spider dev, NL-RX validation/test, Django dev/test) are unique and never
  appear in any training file or in the text corpus. Training items may repeat (Spider, Django), as
  the release's Django lines do; every NL-RX line is unique, since its split is a random one by line.
  Spider and Django hold out at most half of each template's distinct lines, so every template keeps
  most of its lines for training (uncapped, the held-out items used up the small templates: training
  then never showed "return V" with most variables, and the model memorised the few it did show).
- The per-task deviations are listed in each task's module: `gsm8k`, `nlrx`, `django`, `spider`
  and `text` (the corpus); `common` holds the sizes and the unique / held-out-first drawing they share.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterable
from pathlib import Path

from dllm_jepa_train.toy.synthetic.common import (
    DEFAULT_SIZES,
    DJANGO_REAL_NUM_LINES,
    MIN_SIZES,
    _held_out_keys,
    _scaled,
    django_split_bounds,
)
from dllm_jepa_train.toy.synthetic.django import _write_django
from dllm_jepa_train.toy.synthetic.gsm8k import GSM8K_TEMPLATES, _write_gsm8k
from dllm_jepa_train.toy.synthetic.nlrx import _write_nlrx
from dllm_jepa_train.toy.synthetic.spider import SPIDER_TEMPLATES, _write_spider
from dllm_jepa_train.toy.synthetic.text import _write_text

__all__ = [
    "DEFAULT_SIZES",
    "DJANGO_REAL_NUM_LINES",
    "GSM8K_TEMPLATES",
    "MIN_SIZES",
    "SPIDER_TEMPLATES",
    "django_split_bounds",
    "generate_all",
    "main",
]


def generate_all(out_dir: str | Path, seed: int = 0, scale: float = 1.0) -> dict[str, int]:
    """Write every synthetic dataset under out_dir; return {relative file path: record count}.

    Counts are lines for text files, records for JSON files, schemas for tables.json and rows for the
    SQLite files. Each dataset has its own random stream (seeded from `seed` and its name), so changing
    one generator does not change the others' files.
    """
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def stream(name: str) -> random.Random:
        return random.Random(f"dllm-jepa-synthetic/{seed}/{name}")

    counts: dict[str, int] = {}
    n_train, n_test = _write_gsm8k(out, stream("gsm8k"), _scaled("gsm8k_train", scale), _scaled("gsm8k_test", scale))
    counts["gsm8k/train.jsonl"], counts["gsm8k/test.jsonl"] = n_train, n_test
    counts.update(_write_spider(out, stream("spider"), _scaled("spider_dev", scale), _scaled("spider_train", scale)))
    n = _write_nlrx(out, stream("nlrx"), _scaled("nlrx", scale))
    counts["nlrx/synth_src.txt"] = counts["nlrx/synth_targ.txt"] = n
    n = _write_django(out, stream("django"), _scaled("django", scale))
    counts["django/all.anno"] = counts["django/all.code"] = n
    n_train, n_valid = _write_text(
        out, stream("text"), _scaled("text_train", scale), _scaled("text_valid", scale), _held_out_keys(out)
    )
    counts["text/train.txt"], counts["text/valid.txt"] = n_train, n_valid
    _write_readme(out, seed, scale, counts)
    return counts


def _write_readme(out: Path, seed: int, scale: float, counts: dict[str, int]) -> None:
    table = "\n".join(f"| `{path}` | {n} |" for path, n in sorted(counts.items()))
    n_django = counts["django/all.code"]
    train, dev, test = django_split_bounds(n_django)
    text = f"""# Synthetic task data (not the real datasets)

Generated by `dllm_jepa_train.toy.synthetic.generate_all(out_dir, seed={seed}, scale={scale})`
(`python -m dllm_jepa_train.toy.synthetic --out DIR --seed {seed} --scale {scale}`). Every file is drawn from
templates; the layout, file formats and record keys match the real GSM8K, Spider, NL-RX-Synth and
Django releases so the same loaders read both. Numbers from this data say nothing about the paper.

| file | records |
|---|---|
{table}

- Spider databases: `demo_shop` (customers, products, orders) and `demo_school` (students, courses,
  enrollments). Every gold query returns a row with a value other than NULL or 0.
- NL-RX: use a seeded 65/10/25% split of the lines, as the real data's 6,500/1,000/2,500.
- Django: split by line order, proportional to the real 16000/17000 of 18805 bounds:
  train {train.start}-{train.stop - 1}, dev {dev.start}-{dev.stop - 1}, test {test.start}-{test.stop - 1}
  (`django_split_bounds`).
- `text/`: one document per line, stand-in for Wikitext; drawn from fresh samples of the same templates,
  excluding every held-out (test, dev) task item; train and valid share no line.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def main(argv: Iterable[str] | None = None) -> None:
    """Command line: python -m dllm_jepa_train.toy.synthetic --out DIR [--seed 0] [--scale 1.0]."""
    parser = argparse.ArgumentParser(prog="python -m dllm_jepa_train.toy.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="directory to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every dataset size")
    args = parser.parse_args(None if argv is None else list(argv))
    counts = generate_all(args.out, seed=args.seed, scale=args.scale)
    for path, n in counts.items():
        print(f"{path}\t{n}")
