"""Benchmark the NL-RX regex metrics: func_match + dfa_match over the 2,500 test regexes, one core.

Each test gold is scored against itself and against a one-edit perturbation of itself (the
labelled set the tests use, at full size). Target: NL-RX 2,500 func + dfa in under 60 s on one core.

    PYTHONPATH=. python benchmarks/bench_metrics_regex.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

from lm_eval_diffusion.metrics import regex as rx
from lm_eval_diffusion.metrics.regex import automata, syntax
from lm_eval_diffusion.task_data import NLRX_SPLIT_SEED, nlrx_split_indices

PERTURB_SEED = 0
TARGET_SECONDS = 60.0


def _default_data_dir() -> Path:
    env = os.environ.get("DLLM_JEPA_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _pin_to_one_core() -> str:
    """Restrict this process to one CPU so the timing is a one-core figure; says which."""
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity on this platform)"
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to CPU {core}"


def _score(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Score (pred, gold) pairs with both metrics, timing them together."""
    start = time.perf_counter()
    dfa = [rx.dfa_match(pred, gold) for pred, gold in pairs]
    func = [rx.func_match(pred, gold) for pred, gold in pairs]
    seconds = time.perf_counter() - start
    return {
        "pairs": len(pairs),
        "seconds": seconds,
        "dfa_true": sum(dfa),
        "func_true": sum(func),
        "func_true_dfa_false": sum(f and not d for d, f in zip(dfa, func)),
        "func_false_dfa_true": sum(d and not f for d, f in zip(dfa, func)),
        "exact_true": sum(rx.exact_match(pred, gold) for pred, gold in pairs),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark, print one line per part, and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=_default_data_dir(),
        help="folder holding nlrx/synth_targ.txt (default: $DLLM_JEPA_DATA or ../shared/data)",
    )
    args = parser.parse_args(argv)
    path = args.data_dir / "nlrx" / "synth_targ.txt"
    if not path.is_file():
        raise SystemExit(f"NL-RX regexes not found at {path}; pass --data-dir")
    golds = path.read_text(encoding="utf-8").splitlines()
    test = nlrx_split_indices(len(golds))["test"]  # the task suite's seeded test split
    test_golds = [golds[i] for i in test]
    rng = random.Random(PERTURB_SEED)
    perturbed = [(rx.perturb_regex(gold, rng), gold) for gold in test_golds]

    pinning = _pin_to_one_core()
    syntax._parse_cached.cache_clear()  # time from scratch: no ASTs or DFAs left from other work
    automata._compile_pair.cache_clear()
    self_figures = _score([(gold, gold) for gold in test_golds])
    perturbed_figures = _score(perturbed)
    total = self_figures["seconds"] + perturbed_figures["seconds"]
    per_pair_ms = 1000 * total / (self_figures["pairs"] + perturbed_figures["pairs"])

    print(f"NL-RX test split: {len(test_golds)} golds (split seed {NLRX_SPLIT_SEED}); {pinning}")
    for name, figures in (("self", self_figures), ("perturbed", perturbed_figures)):
        print(
            f"{name:>9}: {figures['pairs']} pairs in {figures['seconds']:.1f} s | "
            f"dfa {figures['dfa_true']} equal, func {figures['func_true']} equal, "
            f"exact {figures['exact_true']} | "
            f"func-true/dfa-false {figures['func_true_dfa_false']}, "
            f"func-false/dfa-true {figures['func_false_dfa_true']}"
        )
    met = total < TARGET_SECONDS
    print(
        f"total: {total:.1f} s ({per_pair_ms:.2f} ms per pair, func + dfa) | target: NL-RX 2,500 "
        f"func + dfa in under {TARGET_SECONDS:.0f} s on one core: {'met' if met else 'MISSED'}"
    )
    return {
        "num_test_golds": len(test_golds),
        "self": self_figures,
        "perturbed": perturbed_figures,
        "total_seconds": total,
        "ms_per_pair": per_pair_ms,
        "target_seconds": TARGET_SECONDS,
        "target_met": met,
        "pinning": pinning,
    }


if __name__ == "__main__":
    main()
