"""Metric checks that take long on purpose: every NL-RX gold through the automata, and a deliberate
10-s Spider runaway (the unit layer keeps the hand-checked cases and small real-data samples)."""

from __future__ import annotations

import time

import pytest

from conftest import shared_data_or_skip
from lm_eval_diffusion.metrics.regex import dfa_match
from lm_eval_diffusion.metrics.sql import exec_match, exec_match_all

_COUNT = "SELECT count(*) FROM singer"


@pytest.fixture(scope="module")
def golds() -> list[str]:
    lines = shared_data_or_skip("nlrx", "synth_targ.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 10_000, "NL-RX-SYNTH has 10,000 regexes"
    return lines


@pytest.fixture(scope="module")
def concert_db():
    return shared_data_or_skip("spider", "database", "concert_singer", "concert_singer.sqlite")


def test_every_gold_parses_and_is_dfa_equivalent_to_itself(golds: list[str]) -> None:
    # Under the real clock budget: a few golds (e.g. `(...){7,}`) take half of the fixed 1 s on an
    # idle 2-core machine, and the budget's share that scales with the gold's own cost keeps them equal.
    not_equal = [g for g in golds if not dfa_match(g, g)]
    assert not_equal == []


@pytest.mark.slow
def test_runaway_prediction_costs_one_task_timeout(concert_db):
    # The spider_exec task scores three cleanings with a 10 s limit each; before statements were shared,
    # this prediction cost two timeouts (20.0 s measured), and would now cost three.
    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)\nSELECT count(*) FROM c;"
    exec_match(_COUNT, _COUNT, concert_db, timeout_s=10.0)
    start = time.monotonic()
    results = exec_match_all(runaway, _COUNT, concert_db, timeout_s=10.0)
    elapsed = time.monotonic() - start
    assert {r.error for r in results.values()} == {"timeout"}
    assert 10.0 <= elapsed < 15.0, elapsed
