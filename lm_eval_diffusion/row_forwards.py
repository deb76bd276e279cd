"""Row-forwards per task: what early exit saves, summed over ranks, logged and recorded in the results JSON.

A row-forward is one canvas row through the model; the full loop spends `steps` per request (twice that
under classifier-free guidance), early exit fewer. `generate_until` counts each call's requests per task
and hands them to `RowForwards.add` on every rank.
"""

from __future__ import annotations

import logging
from collections import Counter

from lm_eval_diffusion import distributed

logger = logging.getLogger(__name__)


class RowForwards:
    """Per-task totals of requests, row_forwards and row_forwards_full_loop over every rank."""

    def __init__(self, early_exit: bool, threshold: float | None, world_size: int) -> None:
        self.early_exit, self.threshold, self.world_size = early_exit, threshold, world_size
        self.totals: dict[str, Counter] = {}

    def add(self, forwards: dict[str, Counter], log: bool) -> None:
        """Sum one generate_until call's per-task counts over ranks into the totals; log them when `log`.

        Every rank calls generate_until once per lm-eval run (lm-eval pads uneven shards), so the gather
        here is matched on every rank.
        """
        gathered = distributed.all_gather_object(forwards)
        for part in gathered:
            for task, counts in part.items():
                self.totals.setdefault(task, Counter()).update(counts)
        if not log:
            return
        for task in sorted({t for part in gathered for t in part}):
            total = self.totals[task]
            logger.info(
                "llada_diffusion: %s: %d row-forwards for %d requests over %d rank(s), %.3f of the %d "
                "the full loop takes (early_exit=%s, threshold=%s)", task, total["row_forwards"],
                total["requests"], self.world_size, total["row_forwards"] / max(total["row_forwards_full_loop"], 1),
                total["row_forwards_full_loop"], self.early_exit, self.threshold,
            )

    def as_dict(self) -> dict[str, dict[str, int]]:
        """{task: {requests, row_forwards, row_forwards_full_loop}}, tasks sorted (the results JSON entry)."""
        return {task: dict(counts) for task, counts in sorted(self.totals.items())}
