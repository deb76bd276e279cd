"""Statistics of `compare`: per-seed comparisons with the baseline, grids, and A.1's drift-forgetting tests.

Per cell, task and metric, each method variant is compared with the cell's baseline over the seeds
both have: the baseline's and the method's mean +- population std, the paired delta (method -
baseline, per seed) mean +- population std, and n. A method swept over one or two settings in a cell
(the paper's Tables 7 and 11: rows lambda, columns k) is also laid out as a grid, mean +- std per cell,
with the best cell "selected on the evaluation split (optimistic)", or selected on held-out dev results
(`--select-on`). Seeds one method has and the other lacks are listed, never dropped.

Drift vs forgetting (paper A.1): per method, Pearson r between mean drift and probe delta pooled
over every run given, with a 95% confidence interval from Fisher's z (tanh(atanh r +- 1.96 / sqrt(n - 3))),
and Fisher's r-to-z test between methods (two-sided p from the normal CDF); below n = 4 both say
"n too small". Figure 5's joint drift-forgetting density landscape: per method, a Gaussian KDE of those
same (mean drift, probe delta) points (`scipy.stats.gaussian_kde`, Scott's bandwidth); a method with
fewer than 3 runs or a singular covariance (its points coincide or lie on a line) gets none, with the
reason.

Means, standard deviations, Pearson's r and the normal CDF are the standard library's `statistics`
(`fmean`, `pstdev`, `correlation`, `NormalDist`): exactly rounded sums, so a constant seed set has a
std of exactly 0.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Any

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import RunIdentity
from dllm_jepa_train.analysis.drift import THIRDS, ratio
from dllm_jepa_train.analysis.runs import RunData, RunKey, cell_title, method_order, sort_value

SELECTED_ON_EVAL = "selected on the evaluation split (optimistic)"
MIN_CORRELATION_N = 4  # Fisher's z needs n - 3 >= 1
MIN_DENSITY_RUNS = 3  # a 2-D Gaussian KDE needs a full-rank covariance: 3 points off one line at least
# 1 - r^2 (the determinant of the points' correlation matrix) below this: they lie on a line up to rounding,
# and a KDE would be a ridge of zero width.
SINGULAR_DETERMINANT = 1e-9
# Two-sided 95% quantile of the standard normal, as scipy's ndtri gives it: the double nearest the true
# 1.95996398454005423...; statistics.NormalDist().inv_cdf(0.975) returns 1.9599639845400536, 2 ulps below.
Z_95 = 1.959963984540054
STANDARD_NORMAL = statistics.NormalDist()
PROBE_TASK = "(probe)"
DRIFT_TASK = "(drift)"


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof = 0, as Table 12 reports over seeds) of >= 1 values."""
    return statistics.fmean(values), statistics.pstdev(values)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation of paired values; None with fewer than two points or when either side is constant.

    ValueError when `xs` and `ys` differ in length (a caller's bug, not a statistical outcome).
    """
    if len(xs) != len(ys):
        raise ValueError(f"pearson: {len(xs)} x values but {len(ys)} y values")
    # Checked exactly here: statistics.correlation only notices a constant side when its deviations from
    # the rounded mean are all 0, and [0.1, 0.1, 0.1] (mean 0.10000000000000002) slips through as r = 0.
    if len(xs) < 2 or len(set(xs)) == 1 or len(set(ys)) == 1:
        return None
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:  # sxx * syy underflows to 0: spreads too small to give an r
        return None


def fisher_ci(r: float | None, n: int) -> list[float] | None:
    """95% confidence interval of a Pearson r from n points via Fisher's z; None when n < 4 or r = +-1."""
    if r is None or n < MIN_CORRELATION_N or abs(r) >= 1.0:
        return None
    z, half = math.atanh(r), Z_95 / math.sqrt(n - 3)
    return [math.tanh(z - half), math.tanh(z + half)]


def r_to_z_test(r1: float, n1: int, r2: float, n2: int) -> dict | None:
    """Fisher's test of r1 = r2 for independent samples: {"z", "p"} (two-sided); None when n < 4 or |r| = 1."""
    if min(n1, n2) < MIN_CORRELATION_N or max(abs(r1), abs(r2)) >= 1.0:
        return None
    z = (math.atanh(r1) - math.atanh(r2)) / math.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))
    # The lower tail, not 1 - cdf(|z|): no cancellation, so a large |z| keeps a p above 0.
    return {"z": z, "p": 2.0 * STANDARD_NORMAL.cdf(-abs(z))}


def higher_is_better(metric: str) -> bool:
    """lm-eval metrics are scores, except error rates and losses (e.g. spider_exec's exec_error)."""
    return not any(word in metric for word in ("error", "loss"))


def run_values(run: RunData) -> dict[tuple[str, str], float]:
    """{(task, metric): value} of a run, the probe and drift summaries included as pseudo-tasks."""
    out = {(task, metric): v for task, metrics in run.metrics.items() for metric, v in metrics.items()}
    if run.probe is not None:
        out[(PROBE_TASK, "loss delta to base")] = float(run.probe["delta"])
    if run.drift is not None:
        out[(DRIFT_TASK, "mean")] = float(run.drift["mean"])
        for third, value in run.drift["thirds"].items():
            if value is not None:
                out[(DRIFT_TASK, third)] = float(value)
    return out


def row_order(key: tuple[str, str]) -> tuple:
    """lm-eval tasks first (alphabetical), then the probe, then drift (mean, early, middle, late)."""
    task, metric = key
    if task == PROBE_TASK:
        return (1, task, 0, metric)
    if task == DRIFT_TASK:
        parts = ("mean",) + THIRDS
        return (2, task, parts.index(metric) if metric in parts else len(parts), metric)
    return (0, task, 0, metric)


def compare_methods(base_runs: dict[int, RunData], other_runs: dict[int, RunData], baseline: str,
                    method: str) -> dict:
    """Rows of baseline -> method per (task, metric) over the seeds both have, and the missing seeds.

    `base_runs` and `other_runs` map seed -> run, both of one cell.
    """
    base_values = {s: run_values(r) for s, r in base_runs.items()}
    other_values = {s: run_values(r) for s, r in other_runs.items()}
    keys = sorted({k for v in list(base_values.values()) + list(other_values.values()) for k in v}, key=row_order)
    missing: list[str] = []
    for seed in sorted(set(base_runs) ^ set(other_runs)):
        have, lack = (baseline, method) if seed in base_runs else (method, baseline)
        missing.append(f"seed {seed}: {have} run present, {lack} run missing")
    rows = []
    for task, metric in keys:
        base_seeds = {s for s, v in base_values.items() if (task, metric) in v}
        other_seeds = {s for s, v in other_values.items() if (task, metric) in v}
        for seed in sorted((base_seeds ^ other_seeds) & set(base_runs) & set(other_runs)):
            have, lack = (baseline, method) if seed in base_seeds else (method, baseline)
            missing.append(f"{task} {metric}: seed {seed} has a {have} value but no {lack} value")
        common = sorted(base_seeds & other_seeds)
        row: dict[str, Any] = {"task": task, "metric": metric, "seeds": common, "n": len(common)}
        if common:
            b = [base_values[s][(task, metric)] for s in common]
            o = [other_values[s][(task, metric)] for s in common]
            row["baseline_mean"], row["baseline_std"] = mean_std(b)
            row["method_mean"], row["method_std"] = mean_std(o)
            row["delta_mean"], row["delta_std"] = mean_std([y - x for x, y in zip(b, o)])
        rows.append(row)
    drift_ratio = None
    by_key = {(r["task"], r["metric"]): r for r in rows if r["n"]}
    if (DRIFT_TASK, "mean") in by_key:
        drift_ratio = {}
        for part in ("mean", "early", "middle", "late"):
            row = by_key.get((DRIFT_TASK, part))
            drift_ratio[part] = ratio(row["method_mean"], row["baseline_mean"]) if row is not None else None
        drift_ratio["n"] = by_key[(DRIFT_TASK, "mean")]["n"]
    return {"baseline": baseline, "method": method, "rows": rows, "missing_seeds": missing,
            "drift_ratio": drift_ratio}


def _grid_axes(keys: list[str]) -> tuple[str, str | None]:
    """(row key, column key) of a grid over one or two swept keys: lambda in rows, k in columns (Table 7)."""
    if len(keys) == 1:
        return keys[0], None
    rows = "jepa.lambda" if "jepa.lambda" in keys else keys[0]
    return rows, next(k for k in keys if k != rows)


def build_grids(by_cell: dict[tuple, list[RunData]], swept: dict[str, list[str]], baseline: str,
                dev_runs: dict[RunKey, RunData] | None, select_task: str | None) -> list[dict]:
    """Grid tables (rows x columns of a method's swept settings) per cell, lm-eval task and metric."""
    grids = []
    for cell, cell_runs in by_cell.items():
        base_runs = [r for r in cell_runs if r.method == baseline]
        for method in method_order({r.method for r in cell_runs} - {baseline}):
            runs = [r for r in cell_runs if r.method == method]
            keys = swept.get(method, [])
            variants = {r.identity.variant for r in runs}
            if not 1 <= len(keys) <= 2 or len(variants) < 2:
                continue
            row_key, col_key = _grid_axes(keys)
            metrics = sorted({(t, m) for r in runs for t, ms in r.metrics.items() for m in ms})
            for task, metric in metrics:
                grids.append(_grid(cell_runs[0].identity, method, runs, base_runs, row_key, col_key, task, metric,
                                   dev_runs, select_task))
    return grids


def _axis_value(run: RunData, key: str | None) -> Any:
    return None if key is None else dict(run.identity.variant).get(key)


def _grid(identity: RunIdentity, method: str, runs: list[RunData], base_runs: list[RunData], row_key: str,
          col_key: str | None, task: str, metric: str, dev_runs: dict[RunKey, RunData] | None,
          select_task: str | None) -> dict:
    by_position: dict[tuple, list[float]] = defaultdict(list)
    variants: dict[tuple, tuple] = {}
    for run in runs:
        position = (_axis_value(run, row_key), _axis_value(run, col_key))
        variants[position] = run.identity.variant
        if metric in run.metrics.get(task, {}):
            by_position[position].append(run.metrics[task][metric])
    row_values = sorted({p[0] for p in variants}, key=sort_value)
    col_values = sorted({p[1] for p in variants}, key=sort_value)
    cells = []
    for position, values in by_position.items():
        mean, std = mean_std(values)
        cells.append({"row": position[0], "col": position[1], "mean": mean, "std": std, "n": len(values)})
    base_values = [r.metrics[task][metric] for r in base_runs if metric in r.metrics.get(task, {})]
    base = dict(zip(("mean", "std"), mean_std(base_values)), n=len(base_values)) if base_values else None
    sign = 1.0 if higher_is_better(metric) else -1.0
    if dev_runs is None:
        scores = {(c["row"], c["col"]): c["mean"] for c in cells}
        selection = SELECTED_ON_EVAL
    else:
        scores, selection = _dev_scores(identity, method, variants, metric, dev_runs, select_task)
    best = max(scores, key=lambda p: sign * scores[p]) if scores else None
    return {"cell": cell_title(identity), "method": method, "task": task, "metric": metric, "rows_key": row_key,
            "cols_key": col_key, "row_values": row_values, "col_values": col_values, "cells": cells,
            "baseline": base, "best": list(best) if best is not None else None, "selection": selection,
            "higher_is_better": sign > 0}


def _dev_scores(identity: RunIdentity, method: str, variants: dict[tuple, tuple], metric: str,
                dev_runs: dict[RunKey, RunData], select_task: str | None) -> tuple[dict, str]:
    """Mean over seeds of each grid position's dev-split `metric`; AnalysisError when a position has none."""
    scores = {}
    for position, variant in variants.items():
        values = []
        for (cell, m, v, _), run in dev_runs.items():
            if (cell, m, v) != (identity.cell, method, variant):
                continue
            tasks = [select_task] if select_task else sorted(run.metrics)
            if len(tasks) != 1:
                raise AnalysisError(f"--select-on results of {run.label} hold tasks {tasks}; pick one with --select-task")
            if metric in run.metrics.get(tasks[0], {}):
                values.append(run.metrics[tasks[0]][metric])
        if not values:
            raise AnalysisError(f"--select-on: no dev-split {metric} for {method} {dict(variant)} in cell "
                                f"{cell_title(identity)}; evaluate every grid cell on the dev split")
        scores[position] = mean_std(values)[0]
    return scores, f"selected on the dev split ({select_task or 'the --select-on results'}), mean over seeds"


def correlation_report(points: list[tuple[str, int, float, float]], methods: list[str]) -> tuple[dict, list[dict]]:
    """Per method: Pearson r of (drift, forgetting) pooled over its runs, n, 95% CI; r-to-z tests between methods."""
    correlations = {}
    for method in methods:
        xs = [x for m, _, x, _ in points if m == method]
        ys = [y for m, _, _, y in points if m == method]
        if xs:
            r = pearson(xs, ys)
            entry = {"pearson_r": r, "n": len(xs), "ci95": fisher_ci(r, len(xs))}
            if len(xs) < MIN_CORRELATION_N:
                entry["note"] = "n too small"
            correlations[method] = entry
    tests = []
    names = [m for m in methods if m in correlations]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ca, cb = correlations[a], correlations[b]
            result = None
            if ca["pearson_r"] is not None and cb["pearson_r"] is not None:
                result = r_to_z_test(ca["pearson_r"], ca["n"], cb["pearson_r"], cb["n"])
            if result is None:
                small = min(ca["n"], cb["n"]) < MIN_CORRELATION_N
                result = {"z": None, "p": None, "note": "n too small" if small else "r undefined or ±1"}
            tests.append({"a": a, "b": b, **result})
    return correlations, tests


def density_estimates(points: list[tuple[str, int, float, float]]) -> tuple[dict[str, Any], dict[str, str]]:
    """Figure 5: a Gaussian KDE (scipy, Scott's bandwidth) of each method's (mean drift, probe delta) runs.

    Returns ({method: scipy.stats.gaussian_kde}, {method: why it has none}): fewer than 3 runs, or a
    singular covariance (every run has the same drift or forgetting, or the points lie on a line).
    """
    import numpy as np
    from scipy.stats import gaussian_kde

    kdes: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for method in dict.fromkeys(m for m, _, _, _ in points):
        data = np.array([[x, y] for m, _, x, y in points if m == method], dtype=np.float64).T  # (2, n)
        n = data.shape[1]
        if n < MIN_DENSITY_RUNS:
            skipped[method] = f"{n} run(s); a 2-D Gaussian KDE needs at least {MIN_DENSITY_RUNS}"
            continue
        constant = [name for name, row in zip(("drift", "forgetting"), data) if np.ptp(row) == 0]
        if constant:
            skipped[method] = f"singular covariance: all {n} runs have the same {' and '.join(constant)}"
            continue
        r = float(np.corrcoef(data)[0, 1])
        if 1.0 - r * r < SINGULAR_DETERMINANT:
            skipped[method] = f"singular covariance: the {n} runs lie on a line (Pearson r = {r:+.6f})"
            continue
        try:
            kdes[method] = gaussian_kde(data)
        except np.linalg.LinAlgError as err:
            skipped[method] = f"singular covariance ({err})"
    return kdes, skipped
