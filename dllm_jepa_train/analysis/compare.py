"""Compare baseline, JEPA and anchor runs over seeds: lm-eval results, probe and drift -> Markdown, JSON, PNGs.

The command, in three steps, one module each: read every results file and probe / drift output into
runs identified by cell, method (with its variant settings) and seed (`analysis.runs`); compare each
method variant with its cell's baseline over the seeds both have, lay swept settings out as grids, and
compute A.1's drift-forgetting correlations and Figure 5's density landscape (`analysis.stats`); write
compare.md (`analysis.render`), compare.json and the PNG plots (`analysis.plots`). Seeds one method has
and the other lacks, and settings that differ between runs, are flagged, never dropped; a method with
no density surface is drawn without one, and the log and the report say why.

Smallest run (lm-eval output folders; probe/drift JSONs optional):

    python -m dllm_jepa_train.analysis compare --results eval_out/ --probe probe.json --drift drift.json \
        --out compare_out
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import write_json
from dllm_jepa_train.analysis.render import render_markdown
from dllm_jepa_train.analysis.runs import (
    RunData,
    build_labels,
    cell_title,
    label_runs,
    method_order,
    mismatched_settings,
    ordered_runs,
    read_tables,
)
from dllm_jepa_train.analysis.stats import build_grids, compare_methods, correlation_report, density_estimates

log = logging.getLogger(__name__)


def run_compare(
    results: list[str],
    run_args: list[str],
    probe_files: list[str],
    drift_files: list[str],
    out_dir: str,
    baseline: str = "baseline",
    percent: bool = False,
    select_on: list[str] | None = None,
    select_task: str | None = None,
) -> dict:
    """Build the comparison report, write compare.md, compare.json and the PNG plots to `out_dir`."""
    if not results and not run_args and not probe_files and not drift_files:
        raise AnalysisError("nothing to compare: give --results, --run, --probe or --drift")
    labels, labelled_files = build_labels(run_args)
    table, analysis_settings = read_tables(results, probe_files, drift_files, labels, labelled_files)
    runs = table.runs
    methods = method_order({r.method for r in runs.values()})
    if baseline not in methods:
        raise AnalysisError(f"no {baseline!r} runs found (methods present: {', '.join(methods) or 'none'}); "
                            "pass --baseline NAME or label runs with --run")
    swept = label_runs(runs)
    ordered = ordered_runs(runs)
    by_cell: dict[tuple, list[RunData]] = defaultdict(list)
    for run in ordered:
        by_cell[run.identity.cell].append(run)
    comparisons = []
    for cell, cell_runs in by_cell.items():
        base_runs = {r.seed: r for r in cell_runs if r.method == baseline}
        variants = list(dict.fromkeys((r.method, r.identity.variant) for r in cell_runs if r.method != baseline))
        for method, variant in variants:
            others = {r.seed: r for r in cell_runs if (r.method, r.identity.variant) == (method, variant)}
            label = next(iter(others.values())).method_label
            comparison = compare_methods(base_runs, others, baseline, label)
            comparison["cell"] = cell_title(cell_runs[0].identity)
            comparison["cell_label"] = cell_runs[0].cell_label
            comparisons.append(comparison)
    if not comparisons:
        raise AnalysisError(f"only {baseline!r} runs found; nothing to compare it with")
    dev_runs = None
    if select_on:
        dev_table, _ = read_tables(select_on, [], [], labels, [])
        dev_runs = dev_table.runs
    grids = build_grids(by_cell, swept, baseline, dev_runs, select_task)
    points = [(r.method, r.seed, float(r.drift["mean"]), float(r.probe["delta"]))
              for r in ordered if r.drift is not None and r.probe is not None]
    correlations, correlation_tests = correlation_report(points, methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    curves = [(r.method, r.seed, r.drift["layers"], r.drift["per_layer"]) for r in ordered if r.drift is not None]
    density: dict[str, Any] = {"methods": [], "skipped": {}}
    if curves or points or grids:
        from dllm_jepa_train.analysis.plots import (
            plot_density_landscape, plot_drift_curves, plot_drift_vs_forgetting, plot_grid,
        )

        if curves:
            plots["drift_curves"] = str(plot_drift_curves(curves, out / "drift_curves.png"))
        if points:
            r_by_method = {m: c["pearson_r"] for m, c in correlations.items()}
            scatter = plot_drift_vs_forgetting(points, r_by_method, out / "drift_vs_forgetting.png")
            plots["drift_vs_forgetting"] = str(scatter)
            kdes, skipped = density_estimates(points)
            density = {"methods": list(kdes), "skipped": skipped}
            for method, why in skipped.items():
                log.warning("density landscape (Figure 5): no surface for %s: %s", method, why)
            if kdes:
                landscape = plot_density_landscape(points, kdes, out / "drift_forgetting_density.png")
                plots["drift_forgetting_density"] = str(landscape)
            else:
                log.warning("density landscape (Figure 5) not drawn: no method has a surface")
        for i, grid in enumerate(grids, 1):
            grid["plot"] = plots[f"grid_{i}"] = str(plot_grid(grid, out / f"grid_{i}.png"))
    if not curves:
        log.warning("no drift results: the drift plots are not drawn (pass --drift)")
    elif not points:
        log.warning("no run has both probe and drift results: the drift-vs-forgetting plot is not drawn")
    report = {
        "command": "compare",
        "baseline": baseline,
        "methods": methods,
        "swept_keys": swept,
        "runs": [{"method": r.method, "seed": r.seed, "label": r.label, "cell": r.cell_label,
                  "cell_settings": dict(r.identity.cell), "variant": dict(r.identity.variant),
                  "ablation": r.identity.ablation, "checkpoint": r.checkpoint, "metrics": r.metrics,
                  "settings": r.settings, "results_files": r.sources, "probe": r.probe, "drift": r.drift}
                 for r in ordered],
        "comparisons": comparisons,
        "grids": grids,
        "correlations": correlations,
        "correlation_tests": correlation_tests,
        "density_landscape": density,
        "flags": {
            "missing_seeds": [f"{c['method']} vs {baseline}"
                              f"{' (' + c['cell_label'] + ')' if c['cell_label'] else ''}: {t}"
                              for c in comparisons for t in c["missing_seeds"]],
            "mismatched_settings": mismatched_settings(runs, analysis_settings),
            "duplicates": table.duplicates,
        },
        "plots": plots,
    }
    markdown = render_markdown(report, percent)
    (out / "compare.md").write_text(markdown, encoding="utf-8")
    write_json(out / "compare.json", report)
    report["markdown"] = markdown
    return report
