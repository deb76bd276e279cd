"""PNG plots for `compare`: per-layer drift curves, drift vs forgetting (one colour per method), its density
landscape (Figure 5), grid heat maps.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so nothing global is switched and
no display is needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

METHOD_COLOURS = {"baseline": "tab:blue", "jepa": "tab:orange", "anchor": "tab:green", "jepa+anchor": "tab:red"}
_SPARE_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_SEED_STYLES = ("-", "--", ":", "-.")


def method_colour(method: str, methods: list[str]) -> str:
    """A fixed colour for the paper's methods, spare colours in order for any other."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    others = [m for m in methods if m not in METHOD_COLOURS]
    return _SPARE_COLOURS[others.index(method) % len(_SPARE_COLOURS)]


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=120)
    return path


def plot_drift_curves(curves: list[tuple[str, int, list[int], list[float]]], path: str | Path) -> Path:
    """One line per (method, seed, hidden-state indices, per-layer drift) run; x = layer (0 = embeddings)."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({m for m, _, _, _ in curves})
    seeds = sorted({s for _, s, _, _ in curves})
    for method, seed, layers, curve in curves:
        ax.plot(layers, curve, color=method_colour(method, methods),
                linestyle=_SEED_STYLES[seeds.index(seed) % len(_SEED_STYLES)], marker=".",
                label=f"{method} (seed {seed})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer (hidden-state index: 0 = embedding output, last = after the final norm)")
    ax.set_ylabel("drift 1 - cos(base, fine-tune)")
    ax.set_title("Per-layer drift from the base model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, Path(path))


def plot_drift_vs_forgetting(
    points: list[tuple[str, int, float, float]], correlations: dict[str, float | None], path: str | Path
) -> Path:
    """Scatter of (method, seed, mean drift, probe delta) runs; legend gives each method's Pearson r."""
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({m for m, _, _, _ in points})
    for method in methods:
        xs = [x for m, _, x, _ in points if m == method]
        ys = [y for m, _, _, y in points if m == method]
        r = correlations.get(method)
        r_text = f"r = {r:+.2f}" if r is not None else "r = n/a"
        ax.scatter(xs, ys, color=method_colour(method, methods), label=f"{method} ({r_text}, n = {len(xs)})")
        for m, seed, x, y in points:
            if m == method:
                ax.annotate(f"s{seed}", (x, y), textcoords="offset points", xytext=(4, 3), fontsize="x-small")
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlabel("mean layer drift from the base")
    ax.set_ylabel("held-out loss delta to the base (forgetting)")
    ax.set_title("Drift vs forgetting per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, Path(path))


# Density contours at these fractions of each method's peak; the filled bands stack, so the mode is darkest.
_DENSITY_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
_GRID_POINTS = 150


def _landscape_extent(points: list[tuple[str, int, float, float]], kdes: dict[str, Any]) -> tuple[float, ...]:
    """(x0, x1, y0, y1) holding every point and each surface to 2.5 bandwidth standard deviations."""
    xs = np.array([x for _, _, x, _ in points])
    ys = np.array([y for _, _, _, y in points])
    lo, hi = np.array([xs.min(), ys.min()]), np.array([xs.max(), ys.max()])
    for kde in kdes.values():
        sd = np.sqrt(np.diag(kde.covariance))
        lo = np.minimum(lo, kde.dataset.min(axis=1) - 2.5 * sd)
        hi = np.maximum(hi, kde.dataset.max(axis=1) + 2.5 * sd)
    span = np.where(hi > lo, hi - lo, np.maximum(np.abs(hi), 1e-6))
    return lo[0] - 0.05 * span[0], hi[0] + 0.05 * span[0], lo[1] - 0.05 * span[1], hi[1] + 0.05 * span[1]


def plot_density_landscape(
    points: list[tuple[str, int, float, float]], kdes: dict[str, Any], path: str | Path
) -> Path:
    """Figure 5: each method's Gaussian KDE over (mean drift, probe delta) as nested contours in its colour,
    runs on top; a method without a KDE (`kdes` lacks it) shows its runs only, marked in the legend."""
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    methods = sorted({m for m, _, _, _ in points})
    x0, x1, y0, y1 = _landscape_extent(points, kdes)
    grid_x, grid_y = np.meshgrid(np.linspace(x0, x1, _GRID_POINTS), np.linspace(y0, y1, _GRID_POINTS))
    handles = []
    for method in methods:
        colour = method_colour(method, methods)
        xs = [x for m, _, x, _ in points if m == method]
        ys = [y for m, _, _, y in points if m == method]
        if method in kdes:
            density = kdes[method](np.vstack([grid_x.ravel(), grid_y.ravel()])).reshape(grid_x.shape)
            levels = [f * float(density.max()) for f in _DENSITY_LEVELS]
            for level in levels:
                ax.contourf(grid_x, grid_y, density, levels=[level, np.inf], colors=[colour], alpha=0.12)
            ax.contour(grid_x, grid_y, density, levels=levels, colors=[colour], linewidths=0.8)
        ax.scatter(xs, ys, color=colour, edgecolors="black", linewidths=0.5, s=22, zorder=3)
        note = "KDE" if method in kdes else "no surface: see compare.md"
        handles.append(Line2D([], [], color=colour, marker="o", linestyle="-" if method in kdes else "none",
                              label=f"{method} (n = {len(xs)}, {note})"))
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("mean layer drift from the base")
    ax.set_ylabel("held-out loss delta to the base (forgetting)")
    ax.set_title("Drift-forgetting density landscape (Gaussian KDE per method)")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize="small")
    return _save(fig, Path(path))


def plot_grid(grid: dict, path: str | Path) -> Path:
    """Heat map of a `compare` grid (rows x columns of seed means); the best cell is outlined."""
    rows, cols = grid["row_values"], grid["col_values"]
    means = {(repr(c["row"]), repr(c["col"])): c["mean"] for c in grid["cells"]}
    values = [[means.get((repr(r), repr(c)), float("nan")) for c in cols] for r in rows]
    fig = Figure(figsize=(1.6 + 1.1 * len(cols), 1.4 + 0.6 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value == value:  # not NaN
                ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize="small")
    if grid["best"] is not None:
        i = [repr(r) for r in rows].index(repr(grid["best"][0]))
        j = [repr(c) for c in cols].index(repr(grid["best"][1]))
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(len(cols)), [str(c) for c in cols])
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_xlabel(grid["cols_key"] or "")
    ax.set_ylabel(grid["rows_key"])
    base = grid["baseline"]
    ax.set_title(f"{grid['task']} {grid['metric']}" + (f" (baseline {base['mean']:.3f})" if base else ""),
                 fontsize="small")
    fig.colorbar(image, ax=ax)
    return _save(fig, Path(path))
