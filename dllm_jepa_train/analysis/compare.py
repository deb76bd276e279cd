"""Compare baseline, JEPA and anchor runs over seeds: lm-eval results, probe and drift -> Markdown, JSON, PNGs.

A run is (method, seed). Both come from the trainer's saved config of the checkpoint that was
evaluated (`model_args` pretrained=<run_dir>/final -> <run_dir>/config.yaml: `run.seed`, `jepa.lambda`
= 0 -> baseline, > 0 -> jepa, `anchor.l2_lambda` > 0 -> anchor), or from a `--run METHOD:SEED:PATH`
label, where PATH is an lm-eval results file, a folder of them, or a checkpoint folder. Probe and drift
outputs are attached to runs by their fine-tune checkpoint paths.

Per task and metric, each method is compared with the baseline over the seeds both have: the
baseline's and the method's mean +- population std, the paired delta (method - baseline, per seed)
mean +- population std, and n. Seeds one method has and the other lacks, and settings that differ
between runs (few-shot count, steps, gen_length, block_length, generation kwargs, limit, sample count),
are flagged, never silently dropped.

Smallest run (lm-eval output folders; probe/drift JSONs optional):

    python -m dllm_jepa_train.analysis compare --results eval_out/ --probe probe.json --drift drift.json \
        --out compare_out
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import checkpoint_label, read_json, run_identity, write_json
from dllm_jepa_train.analysis.drift import THIRDS, ratio

log = logging.getLogger(__name__)

METHOD_ORDER = ("baseline", "jepa", "anchor", "jepa+anchor")
# Settings that make two lm-eval runs incomparable when they differ; read from the results' `config`
# (which the llada_diffusion harness fills with its resolved arguments), else from `model_args`.
MODEL_SETTINGS = ("steps", "gen_length", "block_length")
PROBE_TASK = "(probe)"
DRIFT_TASK = "(drift)"
# Probe/drift settings that do not change their numbers, so they may differ between files.
IGNORED_ANALYSIS_SETTINGS = ("batch_size", "device", "text_file")  # text_file: text_source is its resolved path


@dataclass
class RunData:
    """Everything known about one (method, seed) run."""

    method: str
    seed: int
    checkpoint: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> "metric,filter" -> value
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> setting -> value
    sources: dict[str, str] = field(default_factory=dict)  # task -> results file
    dates: dict[str, float] = field(default_factory=dict)  # task -> lm-eval's `date` of that file
    probe: dict | None = None  # {"loss", "delta", "base", "file"}
    drift: dict | None = None  # {"mean", "thirds", "per_layer", "base", "file"}

    @property
    def label(self) -> str:
        return f"{self.method} s{self.seed}"


@dataclass
class Labels:
    """`--run METHOD:SEED:PATH` labels, by results file and by checkpoint."""

    by_results: dict[str, tuple[str, int]] = field(default_factory=dict)
    by_checkpoint: dict[str, tuple[str, int]] = field(default_factory=dict)


def parse_run_label(text: str) -> tuple[str, int, str]:
    """'METHOD:SEED:PATH' -> (method, seed, path); AnalysisError when malformed."""
    parts = text.split(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[2]:
        raise AnalysisError(f"--run {text!r}: expected METHOD:SEED:PATH, e.g. jepa:42:eval_out/results.json")
    try:
        seed = int(parts[1])
    except ValueError:
        raise AnalysisError(f"--run {text!r}: seed {parts[1]!r} is not an integer") from None
    return parts[0], seed, parts[2]


def results_files(path: str | Path) -> list[Path]:
    """lm-eval results JSONs at `path`: the file itself, or every results_*.json below a folder."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.rglob("results_*.json"))
        if not found:
            raise AnalysisError(f"no lm-eval results files (results_*.json) found under {path}")
        return found
    raise AnalysisError(f"results path {path} does not exist")


def is_checkpoint_dir(path: Path) -> bool:
    """A Hugging Face checkpoint folder: a config.json and no results files."""
    return path.is_dir() and (path / "config.json").is_file() and not any(path.rglob("results_*.json"))


def build_labels(run_args: list[str]) -> tuple[Labels, list[Path]]:
    """Labels from `--run` arguments and the results files they name (to be read as well)."""
    labels = Labels()
    files: list[Path] = []
    for text in run_args:
        method, seed, raw = parse_run_label(text)
        path = Path(raw)
        if is_checkpoint_dir(path):
            labels.by_checkpoint[checkpoint_label(raw)] = (method, seed)
            continue
        for file in results_files(path):
            labels.by_results[str(file.resolve())] = (method, seed)
            files.append(file)
    return labels, files


def parse_model_args(value: Any, file: Path) -> dict[str, Any]:
    """lm-eval's `model_args` (a 'k=v,k=v' string or a dict) as a dict."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise AnalysisError(f"results file {file}: config.model_args must be a string or object, got {value!r}")
    out: dict[str, Any] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep:
            raise AnalysisError(f"results file {file}: cannot parse model_args item {item!r} (expected key=value)")
        out[key.strip()] = raw.strip()
    return out


def _normalise(value: Any) -> Any:
    """Numbers given as strings ('128') compare equal to numbers (128)."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
        return None if value.lower() == "none" else value
    return value


def identify(checkpoint: str | None, labels: Labels, what: str) -> tuple[str, int]:
    """(method, seed) of `checkpoint` from a --run label or its run config; AnalysisError naming `what`."""
    if checkpoint is None:
        raise AnalysisError(f"{what}: no checkpoint path (model_args pretrained=...) to find its run config; "
                            f"label it with --run METHOD:SEED:{what}")
    key = checkpoint_label(checkpoint)
    if key in labels.by_checkpoint:
        return labels.by_checkpoint[key]
    found = run_identity(checkpoint)
    if found is None:
        raise AnalysisError(
            f"{what}: checkpoint {checkpoint} has no run config (<run_dir>/config.yaml beside it); "
            f"label it with --run METHOD:SEED:{what} or --run METHOD:SEED:{checkpoint}"
        )
    return found[0], found[1]


class RunTable:
    """The runs by (method, seed), with the flags raised while filling them."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, int], RunData] = {}
        self.duplicates: list[str] = []

    def get(self, method: str, seed: int, checkpoint: str | None, what: str) -> RunData:
        """The run (method, seed), created on first use; AnalysisError if two checkpoints claim it."""
        run = self.runs.setdefault((method, seed), RunData(method, seed))
        if checkpoint is not None:
            key = checkpoint_label(checkpoint)
            if run.checkpoint is None:
                run.checkpoint = key
            elif run.checkpoint != key:
                raise AnalysisError(
                    f"{what}: checkpoints {run.checkpoint} and {key} both claim {method} seed {seed}; give them "
                    f"distinct methods with --run (e.g. --run {method}-b:{seed}:<results or checkpoint>)"
                )
        return run

    def add_results(self, file: Path, labels: Labels) -> None:
        """Read one lm-eval results file into its run."""
        data = read_json(file, "results file")
        results = data.get("results")
        if not isinstance(results, dict) or not results:
            raise AnalysisError(f"results file {file} is not lm-eval output: no non-empty `results` object")
        config = data.get("config") if isinstance(data.get("config"), dict) else {}
        model_args = parse_model_args(config.get("model_args"), file)
        checkpoint = model_args.get("pretrained")
        labelled = labels.by_results.get(str(file.resolve()))
        method, seed = labelled if labelled else identify(checkpoint, labels, str(file))
        run = self.get(method, seed, checkpoint, str(file))
        configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
        n_shot = data.get("n-shot") if isinstance(data.get("n-shot"), dict) else {}
        n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
        date = float(data.get("date") or file.stat().st_mtime)
        for task, values in results.items():
            if not isinstance(values, dict):
                raise AnalysisError(f"results file {file}: results[{task!r}] must be an object, got {values!r}")
            metrics = {
                key: float(value) for key, value in values.items()
                if "," in key and "_stderr," not in key
                and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            }
            if task in run.sources:
                is_later = date >= run.dates[task]
                older, newer = (run.sources[task], str(file)) if is_later else (str(file), run.sources[task])
                self.duplicates.append(f"{run.label} {task}: results in {older} and {newer}; using the later {newer}")
                if not is_later:
                    continue
            task_config = configs.get(task) if isinstance(configs.get(task), dict) else {}
            settings = {
                "num_fewshot": task_config.get("num_fewshot", n_shot.get(task)),
                "generation_kwargs": task_config.get("generation_kwargs"),
                "limit": config.get("limit"),
                "effective_samples": (n_samples.get(task) or {}).get("effective"),
            }
            for name in MODEL_SETTINGS:
                settings[name] = _normalise(config[name] if name in config else model_args.get(name))
            run.metrics[task] = metrics
            run.settings[task] = settings
            run.sources[task] = str(file)
            run.dates[task] = date

    def add_analysis(self, file: Path, command: str, labels: Labels) -> dict:
        """Attach a probe or drift output's fine-tunes to their runs; return its settings for the mismatch check."""
        data = read_json(file, f"{command} file")
        entries = data.get("finetunes")
        if data.get("command") != command or not isinstance(entries, list):
            raise AnalysisError(f"{command} file {file} is not output of `{command}` "
                                f"(expected command={command!r} and a `finetunes` list)")
        base = data.get("base")
        if not isinstance(base, dict) or "path" not in base:
            raise AnalysisError(f"{command} file {file}: no `base` object with a `path`")
        needed = ("loss", "delta") if command == "probe" else ("mean", "thirds", "per_layer")
        for entry in entries:
            if not isinstance(entry, dict) or any(k not in entry for k in needed):
                raise AnalysisError(f"{command} file {file}: a fine-tune entry lacks one of {needed}: {entry!r}")
            checkpoint = entry.get("path") or entry.get("checkpoint")
            method, seed = identify(checkpoint, labels, f"{file} (fine-tune {checkpoint})")
            run = self.get(method, seed, checkpoint, str(file))
            if command == "probe":
                record = {"loss": entry["loss"], "delta": entry["delta"], "base": base["path"], "file": str(file)}
            else:
                record = {"mean": entry["mean"], "thirds": entry["thirds"], "per_layer": entry["per_layer"],
                          "base": base["path"], "file": str(file)}
            previous = getattr(run, command)
            if previous is not None:
                self.duplicates.append(f"{run.label}: {command} results in {previous['file']} and {file}; using {file}")
            setattr(run, command, record)
        settings = dict(data.get("settings") or {})
        for name in IGNORED_ANALYSIS_SETTINGS:
            settings.pop(name, None)
        settings["base"] = base["path"]
        return settings


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof = 0), summing once."""
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / n)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson correlation; None with fewer than two points or when either side is constant."""
    n = len(xs)
    if n < 2 or n != len(ys):
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def method_order(methods: set[str]) -> list[str]:
    """The paper's methods in their order, then any others alphabetically."""
    return [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))


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


def compare_methods(runs: dict[tuple[str, int], RunData], baseline: str, method: str) -> dict:
    """Rows of baseline -> method per (task, metric) over the seeds both have, and the missing seeds."""
    base_runs = {s: r for (m, s), r in runs.items() if m == baseline}
    other_runs = {s: r for (m, s), r in runs.items() if m == method}
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


def ordered_runs(runs: dict[tuple[str, int], RunData]) -> list[RunData]:
    """Runs by method (paper order first) and then seed."""
    methods = method_order({m for m, _ in runs})
    return sorted(runs.values(), key=lambda r: (methods.index(r.method), r.seed))


def _describe(value: Any) -> str:
    return "unset" if value is None else str(value)


def mismatched_settings(runs: dict[tuple[str, int], RunData], analysis_settings: dict[str, list]) -> list[str]:
    """One line per (task, setting) whose value differs between runs, and per differing probe/drift setup."""
    flags = []
    tasks = sorted({t for r in runs.values() for t in r.settings})
    for task in tasks:
        names = sorted({n for r in runs.values() for n in r.settings.get(task, {})})
        for name in names:
            groups: dict[str, list[str]] = defaultdict(list)
            for run in ordered_runs(runs):
                if task in run.settings:
                    groups[_describe(run.settings[task].get(name))].append(run.label)
            if len(groups) > 1:
                parts = "; ".join(f"{value} ({', '.join(labels)})" for value, labels in groups.items())
                flags.append(f"{task}: {name} differs between runs: {parts}")
    for command, entries in analysis_settings.items():
        for name in sorted({n for _, s in entries for n in s}):
            groups = defaultdict(list)
            for file, settings in entries:
                groups[_describe(settings.get(name))].append(file)
            if len(groups) > 1:
                parts = "; ".join(f"{value} ({', '.join(files)})" for value, files in groups.items())
                flags.append(f"{command}: {name} differs between files: {parts}")
    return flags


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
        lines += ["", f"## {b} → {m}", "",
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
    correlations = report["correlations"]
    if correlations:
        lines += ["", "## Drift vs forgetting", ""]
        for method, entry in correlations.items():
            r = f"{entry['pearson_r']:+.3f}" if entry["pearson_r"] is not None else "n/a"
            lines.append(f"- {method}: Pearson r = {r} over {entry['n']} runs")
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
    lines += ["", "## Runs", "", "| method | seed | checkpoint | results files | probe | drift |",
              "|---|---|---|---|---|---|"]
    for run in report["runs"]:
        files = ", ".join(sorted(set(run["results_files"].values()))) or "—"
        probe = run["probe"]["file"] if run["probe"] else "—"
        drift = run["drift"]["file"] if run["drift"] else "—"
        lines.append(f"| {run['method']} | {run['seed']} | {run['checkpoint'] or '—'} | {files} | {probe} | {drift} |")
    if report["plots"]:
        lines += ["", "## Plots", ""]
        for name, path in report["plots"].items():
            lines.append(f"![{name}]({Path(path).name})")
    return "\n".join(lines) + "\n"


def run_compare(
    results: list[str],
    run_args: list[str],
    probe_files: list[str],
    drift_files: list[str],
    out_dir: str,
    baseline: str = "baseline",
    percent: bool = False,
) -> dict:
    """Build the comparison report, write compare.md, compare.json and the PNG plots to `out_dir`."""
    labels, labelled_files = build_labels(run_args)
    files = list(labelled_files)
    seen = {f.resolve() for f in files}
    for path in results:
        for file in results_files(path):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    if not files and not probe_files and not drift_files:
        raise AnalysisError("nothing to compare: give --results, --run, --probe or --drift")
    table = RunTable()
    for file in files:
        table.add_results(file, labels)
    analysis_settings: dict[str, list] = {"probe": [], "drift": []}
    for command, paths in (("probe", probe_files), ("drift", drift_files)):
        for path in paths:
            analysis_settings[command].append((str(path), table.add_analysis(Path(path), command, labels)))
    runs = table.runs
    methods = method_order({m for m, _ in runs})
    if baseline not in methods:
        raise AnalysisError(f"no {baseline!r} runs found (methods present: {', '.join(methods) or 'none'}); "
                            "pass --baseline NAME or label runs with --run")
    comparisons = [compare_methods(runs, baseline, m) for m in methods if m != baseline]
    if not comparisons:
        raise AnalysisError(f"only {baseline!r} runs found; nothing to compare it with")
    ordered = ordered_runs(runs)
    points = [(r.method, r.seed, float(r.drift["mean"]), float(r.probe["delta"]))
              for r in ordered if r.drift is not None and r.probe is not None]
    correlations = {}
    for method in methods:
        xs = [x for m, _, x, _ in points if m == method]
        ys = [y for m, _, _, y in points if m == method]
        if xs:
            correlations[method] = {"pearson_r": pearson(xs, ys), "n": len(xs)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    curves = [(r.method, r.seed, r.drift["per_layer"]) for r in ordered if r.drift is not None]
    if curves or points:
        from dllm_jepa_train.analysis.plots import plot_drift_curves, plot_drift_vs_forgetting

        if curves:
            plots["drift_curves"] = str(plot_drift_curves(curves, out / "drift_curves.png"))
        if points:
            r_by_method = {m: c["pearson_r"] for m, c in correlations.items()}
            scatter = plot_drift_vs_forgetting(points, r_by_method, out / "drift_vs_forgetting.png")
            plots["drift_vs_forgetting"] = str(scatter)
    if not curves:
        log.warning("no drift results: the drift plots are not drawn (pass --drift)")
    elif not points:
        log.warning("no run has both probe and drift results: the drift-vs-forgetting plot is not drawn")
    report = {
        "command": "compare",
        "baseline": baseline,
        "methods": methods,
        "runs": [{"method": r.method, "seed": r.seed, "checkpoint": r.checkpoint, "metrics": r.metrics,
                  "settings": r.settings, "results_files": r.sources, "probe": r.probe, "drift": r.drift}
                 for r in ordered],
        "comparisons": comparisons,
        "correlations": correlations,
        "flags": {
            "missing_seeds": [f"{c['method']} vs {baseline}: {t}" for c in comparisons for t in c["missing_seeds"]],
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
