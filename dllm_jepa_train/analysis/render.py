"""Markdown of `compare`'s report: a table per method variant against its cell's baseline, the grids,
A.1's drift-forgetting statistics, the flags and the runs. Pure: the report dict in, text out.

Cells are mean ± population std over seeds, 4 decimals (lm-eval metrics x 100 to 2 decimals with
`percent`); Δ is the paired per-seed difference; a grid's best cell is in bold.
"""

from __future__ import annotations

from pathlib import Path

from dllm_jepa_train.analysis.runs import format_value, short_name
from dllm_jepa_train.analysis.stats import DRIFT_TASK, PROBE_TASK


def _cell(mean: float, std: float, digits: int, scale: float, signed: bool = False) -> str:
    sign = "+" if signed else ""
    return f"{mean * scale:{sign}.{digits}f} ± {std * scale:.{digits}f}"


def render_markdown(report: dict, percent: bool) -> str:
    """The report as Markdown: one table per method against the baseline, then flags and runs."""
    lines = ["# Baseline vs fine-tuning methods", ""]
    note = "values x 100" if percent else "raw metric values"
    lines.append(f"Mean ± population std over the seeds both methods have (n); Δ is the paired per-seed "
                 f"difference. lm-eval metrics: {note}. Probe: held-out diffusion loss minus the base's "
                 f"(> 0 = forgetting). Drift: 1 - cos to the base, mean over layers and per third.")
    for comparison in report["comparisons"]:
        b, m = comparison["baseline"], comparison["method"]
        heading = f"## {b} → {m}" + (f" ({comparison['cell_label']})" if comparison["cell_label"] else "")
        lines += ["", heading, "", f"Cell: {comparison['cell']}", "",
                  f"| Task | Metric | {b} | {m} | Δ ({m} − {b}) | n |", "|---|---|---|---|---|---|"]
        for row in comparison["rows"]:
            is_eval = row["task"] not in (PROBE_TASK, DRIFT_TASK)
            scale, digits = (100.0, 2) if (percent and is_eval) else (1.0, 4)
            if row["n"]:
                cells = [_cell(row["baseline_mean"], row["baseline_std"], digits, scale),
                         _cell(row["method_mean"], row["method_std"], digits, scale),
                         _cell(row["delta_mean"], row["delta_std"], digits, scale, signed=True)]
            else:
                cells = ["—", "—", "—"]
            lines.append(f"| {row['task']} | {row['metric']} | " + " | ".join(cells) + f" | {row['n']} |")
        ratio = comparison["drift_ratio"]
        if ratio is not None:
            parts = ", ".join(f"{k} {v:.3f}" if v is not None else f"{k} n/a"
                              for k, v in ratio.items() if k != "n")
            lines += ["", f"Drift ratio {m} / {b} (ratio of seed means, n = {ratio['n']}): {parts}"]
    for grid in report["grids"]:
        lines += render_grid(grid, percent)
    correlations = report["correlations"]
    if correlations:
        lines += ["", "## Drift vs forgetting (pooled over the runs given, per method)", ""]
        for method, entry in correlations.items():
            r = f"{entry['pearson_r']:+.3f}" if entry["pearson_r"] is not None else "n/a"
            ci = (f", 95% CI [{entry['ci95'][0]:+.2f}, {entry['ci95'][1]:+.2f}] (Fisher z)" if entry["ci95"]
                  else f", no CI ({entry.get('note', 'r undefined or ±1')})")
            lines.append(f"- {method}: Pearson r = {r} over {entry['n']} runs{ci}")
        for test in report["correlation_tests"]:
            result = (f"z = {test['z']:+.2f}, p = {test['p']:.3f} (two-sided)" if test["z"] is not None
                      else test.get("note", "n too small"))
            lines.append(f"- r({test['a']}) vs r({test['b']}), Fisher r-to-z: {result}")
        density = report["density_landscape"]
        if density["methods"]:
            lines.append(f"- density landscape (Figure 5, Gaussian KDE): {', '.join(density['methods'])}")
        for method, why in density["skipped"].items():
            lines.append(f"- density landscape: no surface for {method}: {why}")
    lines += ["", "## Flags", ""]
    flags = report["flags"]
    any_flag = False
    for kind, title in (("missing_seeds", "missing seed"), ("mismatched_settings", "mismatched settings"),
                        ("duplicates", "duplicate")):
        for text in flags[kind]:
            lines.append(f"- **{title}**: {text}")
            any_flag = True
    if not any_flag:
        lines.append("- none")
    lines += ["", "## Runs", "", "| run | method | seed | checkpoint | results files | probe | drift |",
              "|---|---|---|---|---|---|---|"]
    for run in report["runs"]:
        files = ", ".join(sorted(set(run["results_files"].values()))) or "—"
        probe = run["probe"]["file"] if run["probe"] else "—"
        drift = run["drift"]["file"] if run["drift"] else "—"
        lines.append(f"| {run['label']} | {run['method']} | {run['seed']} | {run['checkpoint'] or '—'} | {files} | "
                     f"{probe} | {drift} |")
    if report["plots"]:
        lines += ["", "## Plots", ""]
        for name, path in report["plots"].items():
            lines.append(f"![{name}]({Path(path).name})")
    return "\n".join(lines) + "\n"


def render_grid(grid: dict, percent: bool) -> list[str]:
    """Markdown lines of one grid: rows x columns of mean ± std (n), best cell in bold, baseline in the caption."""
    scale, digits = (100.0, 2) if percent else (1.0, 4)
    row_name, col_name = short_name(grid["rows_key"]), short_name(grid["cols_key"]) if grid["cols_key"] else ""
    by_position = {(format_value(c["row"]), format_value(c["col"])): c for c in grid["cells"]}
    best = (format_value(grid["best"][0]), format_value(grid["best"][1])) if grid["best"] else None
    base = grid["baseline"]
    caption = (f"baseline: {_cell(base['mean'], base['std'], digits, scale)} (n = {base['n']})" if base
               else "baseline: no run")
    cols = grid["col_values"]
    header = f"| {row_name} \\ {col_name} | " + " | ".join(format_value(c) for c in cols) + " |" if grid["cols_key"] \
        else f"| {row_name} | {grid['method']} |"
    lines = ["", f"## Grid: {grid['method']} over {row_name}{' × ' + col_name if col_name else ''}, "
                 f"{grid['task']} {grid['metric']}", "",
             f"Cell: {grid['cell']}. {caption}. Mean ± population std over seeds (n); **bold**: the best cell, "
             f"{grid['selection']}" + ("" if grid["higher_is_better"] else " (lower is better)") + ".", "",
             header, "|---|" + "---|" * max(1, len(cols) if grid["cols_key"] else 1)]
    for row in grid["row_values"]:
        cells = []
        for col in cols:
            cell = by_position.get((format_value(row), format_value(col)))
            text = f"{_cell(cell['mean'], cell['std'], digits, scale)} ({cell['n']})" if cell else "—"
            cells.append(f"**{text}**" if best == (format_value(row), format_value(col)) else text)
        lines.append(f"| {format_value(row)} | " + " | ".join(cells) + " |")
    if grid.get("plot"):
        lines += ["", f"![heat map]({Path(grid['plot']).name})"]
    return lines
