"""Compare baseline, JEPA and anchor runs over seeds: lm-eval results, probe and drift -> Markdown, JSON, PNGs.

A run is identified by its cell, then its method (with the method's own settings), then its seed,
all read from the trainer's saved config of the checkpoint that was evaluated (`model_args`
pretrained=<run_dir>/final -> <run_dir>/config.yaml, through `dllm_jepa_train.config`). The cell is
every setting that changes what a run learns (backbone, task, schedule t_L / lr / epochs, ...), the
method is baseline (jepa.lambda 0), jepa, anchor or jepa+anchor, and the variant its own settings
(lambda, k, t_H, ...; k = 0 is the "no predictor" ablation, t_H = t_L "symmetric views"). A
`--run METHOD:SEED:PATH` label (PATH: an lm-eval results file, a folder of them, or a checkpoint
folder) sets method and seed; the cell still comes from the run config when there is one. Probe and
drift outputs are attached to runs by their fine-tune checkpoint paths.

Per cell, task and metric, each method variant is compared with the cell's baseline over the seeds
both have: the baseline's and the method's mean +- population std, the paired delta (method -
baseline, per seed) mean +- population std, and n. A method swept over one or two settings in a cell
(the paper's Tables 7 and 11: rows lambda, columns k) is also printed as a grid, mean +- std per cell,
baseline in the caption, with a heat-map PNG; the best cell is marked "selected on the evaluation
split (optimistic)", or selected on held-out dev results (`--select-on`). Seeds one method has and
the other lacks, settings that differ between runs (few-shot count, steps, gen_length, block_length,
generation kwargs, limit, sample count, the task's metadata version) are flagged, never dropped.

Drift vs forgetting (paper A.1): per method, Pearson r between mean drift and probe delta pooled
over every run given (choose the cells by the probe / drift files you pass), with a 95% confidence
interval from Fisher's z (tanh(atanh r +- 1.96 / sqrt(n - 3))), and Fisher's r-to-z test between
methods (two-sided p from the normal CDF); below n = 4 both say "n too small".
Figure 5's joint drift-forgetting density landscape: per method, a Gaussian KDE of those same
(mean drift, probe delta) points (`scipy.stats.gaussian_kde`, Scott's bandwidth), drawn beside the
scatter; a method with fewer than 3 runs or a singular covariance (its points coincide or lie on a
line) gets no surface, and the log and the report say why.

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
from dllm_jepa_train.analysis.common import (
    SHORT_NAMES,
    RunIdentity,
    checkpoint_label,
    read_json,
    run_identity,
    write_json,
)
from dllm_jepa_train.analysis.drift import THIRDS, ratio

log = logging.getLogger(__name__)

METHOD_ORDER = ("baseline", "jepa", "anchor", "jepa+anchor")
# Settings that make two lm-eval runs incomparable when they differ; read from the results' `config`
# (which the llada_diffusion harness fills with its resolved arguments), else from `model_args`.
MODEL_SETTINGS = ("steps", "gen_length", "block_length")
SELECTED_ON_EVAL = "selected on the evaluation split (optimistic)"
MIN_CORRELATION_N = 4  # Fisher's z needs n - 3 >= 1
MIN_DENSITY_RUNS = 3  # a 2-D Gaussian KDE needs a full-rank covariance: 3 points off one line at least
# 1 - r^2 (the determinant of the points' correlation matrix) below this: they lie on a line up to rounding,
# and a KDE would be a ridge of zero width.
SINGULAR_DETERMINANT = 1e-9
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
PROBE_TASK = "(probe)"
DRIFT_TASK = "(drift)"
# Probe/drift settings that do not change their numbers, so they may differ between files.
IGNORED_ANALYSIS_SETTINGS = ("batch_size", "device", "text_file")  # text_file: text_source is its resolved path


@dataclass
class RunData:
    """Everything known about one run (cell, method, variant, seed)."""

    identity: RunIdentity
    checkpoint: str | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # task -> "metric,filter" -> value
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> setting -> value
    sources: dict[str, str] = field(default_factory=dict)  # task -> results file
    dates: dict[str, float] = field(default_factory=dict)  # task -> lm-eval's `date` of that file
    probe: dict | None = None  # {"loss", "delta", "base", "file"}
    drift: dict | None = None  # {"mean", "thirds", "per_layer", "layers", "base", "file"}
    cell_label: str = ""  # the cell's settings that differ between the cells of this report
    method_label: str = ""  # method, ablation, and the variant settings swept in this report

    @property
    def method(self) -> str:
        return self.identity.method

    @property
    def seed(self) -> int:
        return self.identity.seed

    @property
    def label(self) -> str:
        return f"{self.cell_label + ' · ' if self.cell_label else ''}{self.method_label or self.method} s{self.seed}"


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


def identify(checkpoint: str | None, labels: Labels, what: str, label: tuple[str, int] | None = None) -> RunIdentity:
    """The RunIdentity of `checkpoint`: its run config, with method and seed from a --run label if given."""
    if checkpoint is not None and label is None:
        label = labels.by_checkpoint.get(checkpoint_label(checkpoint))
    found = run_identity(checkpoint) if checkpoint is not None else None
    if label is not None:
        if found is None:
            return RunIdentity((), label[0], (), label[1])
        return RunIdentity(found.cell, label[0], found.variant, label[1], found.config)
    if checkpoint is None:
        raise AnalysisError(f"{what}: no checkpoint path (model_args pretrained=...) to find its run config; "
                            f"label it with --run METHOD:SEED:{what}")
    if found is None:
        raise AnalysisError(
            f"{what}: checkpoint {checkpoint} has no run config (<run_dir>/config.yaml beside it); "
            f"label it with --run METHOD:SEED:{what} or --run METHOD:SEED:{checkpoint}"
        )
    return found


RunKey = tuple  # (cell, method, variant, seed) of a RunIdentity


def run_key(identity: RunIdentity) -> RunKey:
    return identity.cell, identity.method, identity.variant, identity.seed


class RunTable:
    """The runs by identity (cell, method, variant, seed), with the flags raised while filling them."""

    def __init__(self) -> None:
        self.runs: dict[RunKey, RunData] = {}
        self.duplicates: list[str] = []

    def get(self, identity: RunIdentity, checkpoint: str | None, what: str) -> RunData:
        """The run of `identity`, created on first use; AnalysisError if two checkpoints claim it."""
        run = self.runs.setdefault(run_key(identity), RunData(identity))
        if checkpoint is not None:
            key = checkpoint_label(checkpoint)
            if run.checkpoint is None:
                run.checkpoint = key
            elif run.checkpoint != key:
                method, seed = identity.method, identity.seed
                raise AnalysisError(
                    f"{what}: checkpoints {run.checkpoint} and {key} both claim {method} seed {seed} of the same "
                    f"cell; give them distinct methods with --run (e.g. --run {method}-b:{seed}:<results or checkpoint>)"
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
        identity = identify(checkpoint, labels, str(file), labels.by_results.get(str(file.resolve())))
        run = self.get(identity, checkpoint, str(file))
        configs = data.get("configs") if isinstance(data.get("configs"), dict) else {}
        n_shot = data.get("n-shot") if isinstance(data.get("n-shot"), dict) else {}
        n_samples = data.get("n-samples") if isinstance(data.get("n-samples"), dict) else {}
        versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
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
                "version": (task_config.get("metadata") or {}).get("version", versions.get(task)),
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
            identity = identify(checkpoint, labels, f"{file} (fine-tune {checkpoint})")
            run = self.get(identity, checkpoint, str(file))
            if command == "probe":
                record = {"loss": entry["loss"], "delta": entry["delta"], "base": base["path"], "file": str(file)}
            else:
                # Drift files written before `layers` existed always started at hidden state 0 (embeddings).
                layers = data.get("layers") or list(range(len(entry["per_layer"])))
                if len(layers) != len(entry["per_layer"]):
                    raise AnalysisError(f"drift file {file}: {len(entry['per_layer'])} per_layer values for "
                                        f"{len(layers)} layers")
                record = {"mean": entry["mean"], "thirds": entry["thirds"], "per_layer": entry["per_layer"],
                          "layers": layers, "base": base["path"], "file": str(file)}
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


def _sort_value(value: Any) -> tuple:
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def ordered_runs(runs: dict[RunKey, RunData]) -> list[RunData]:
    """Runs by cell, method (paper order first), variant and then seed."""
    methods = method_order({r.method for r in runs.values()})
    return sorted(runs.values(), key=lambda r: (
        [(k, _sort_value(v)) for k, v in r.identity.cell], methods.index(r.method),
        [(k, _sort_value(v)) for k, v in r.identity.variant], r.seed))


def _short(key: str) -> str:
    return SHORT_NAMES.get(key, key)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _differing(facts: list[tuple[tuple[str, Any], ...]]) -> list[str]:
    """Keys whose value (or presence) differs between the given fact tuples, in first-seen order."""
    dicts = [dict(f) for f in facts]
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return [k for k in keys if len({repr(d.get(k, "<unset>")) for d in dicts}) > 1]


def cell_title(identity: RunIdentity) -> str:
    """The cell's paper-facing description: backbone, task, t_L, lr (whatever it has of them)."""
    cell = dict(identity.cell)
    parts = []
    backbone = cell.get("model.pretrained")
    if backbone is not None:
        parts.append(Path(str(backbone)).name)
    parts += [_fmt(cell["data.source"])] if "data.source" in cell else []
    parts += [f"{_short(k)} {_fmt(cell[k])}" for k in ("diffusion.t_context", "optim.lr") if k in cell]
    return " · ".join(parts) or "unidentified cell (--run labels without a run config)"


def label_runs(runs: dict[RunKey, RunData]) -> dict[str, list[str]]:
    """Set each run's cell and method labels from what varies in this report; return the swept keys.

    Returns {"cell": keys that differ between cells, METHOD: variant keys that differ between that
    method's variants} (the report's "swept keys").
    """
    cell_keys = _differing(list({r.identity.cell for r in runs.values()}))
    swept: dict[str, list[str]] = {"cell": cell_keys}
    for method in {r.method for r in runs.values()}:
        variants = list({r.identity.variant for r in runs.values() if r.method == method and r.identity.variant})
        swept[method] = _differing(variants)
    for run in runs.values():
        cell = dict(run.identity.cell)
        run.cell_label = ", ".join(f"{_short(k)}={_fmt(cell[k])}" for k in cell_keys if k in cell)
        variant = dict(run.identity.variant)
        parts = [f"{_short(k)}={_fmt(variant[k])}" for k in swept[run.method] if k in variant]
        if run.identity.ablation:
            parts.append(run.identity.ablation)
        run.method_label = run.method + (f" ({', '.join(parts)})" if parts else "")
    return swept


def fisher_ci(r: float | None, n: int) -> list[float] | None:
    """95% confidence interval of a Pearson r from n points via Fisher's z; None when n < 4 or r = +-1."""
    if r is None or n < MIN_CORRELATION_N or abs(r) >= 1.0:
        return None
    z, half = math.atanh(r), Z_95 / math.sqrt(n - 3)
    return [math.tanh(z - half), math.tanh(z + half)]


def normal_cdf(x: float) -> float:
    """Standard normal CDF through math.erf (no scipy needed for one function)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def r_to_z_test(r1: float, n1: int, r2: float, n2: int) -> dict | None:
    """Fisher's test of r1 = r2 for independent samples: {"z", "p"} (two-sided); None when n < 4 or |r| = 1."""
    if min(n1, n2) < MIN_CORRELATION_N or max(abs(r1), abs(r2)) >= 1.0:
        return None
    z = (math.atanh(r1) - math.atanh(r2)) / math.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))
    return {"z": z, "p": 2.0 * (1.0 - normal_cdf(abs(z)))}


def higher_is_better(metric: str) -> bool:
    """lm-eval metrics are scores, except error rates and losses (e.g. spider_exec's exec_error)."""
    return not any(word in metric for word in ("error", "loss"))


def _describe(value: Any) -> str:
    return "unset" if value is None else str(value)


def mismatched_settings(runs: dict[RunKey, RunData], analysis_settings: dict[str, list]) -> list[str]:
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
    row_values = sorted({p[0] for p in variants}, key=_sort_value)
    col_values = sorted({p[1] for p in variants}, key=_sort_value)
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


def _read_tables(results: list[str], probe_files: list[str], drift_files: list[str], labels: Labels,
                 labelled_files: list[Path]) -> tuple[RunTable, dict[str, list]]:
    """Every results file (labelled ones first) and probe/drift output read into one RunTable."""
    files = list(labelled_files)
    seen = {f.resolve() for f in files}
    for path in results:
        for file in results_files(path):
            if file.resolve() not in seen:
                seen.add(file.resolve())
                files.append(file)
    table = RunTable()
    for file in files:
        table.add_results(file, labels)
    analysis_settings: dict[str, list] = {"probe": [], "drift": []}
    for command, paths in (("probe", probe_files), ("drift", drift_files)):
        for path in paths:
            analysis_settings[command].append((str(path), table.add_analysis(Path(path), command, labels)))
    return table, analysis_settings


def render_grid(grid: dict, percent: bool) -> list[str]:
    """Markdown lines of one grid: rows x columns of mean ± std (n), best cell in bold, baseline in the caption."""
    scale, digits = (100.0, 2) if percent else (1.0, 4)
    row_name, col_name = _short(grid["rows_key"]), _short(grid["cols_key"]) if grid["cols_key"] else ""
    by_position = {(_fmt(c["row"]), _fmt(c["col"])): c for c in grid["cells"]}
    best = (_fmt(grid["best"][0]), _fmt(grid["best"][1])) if grid["best"] else None
    base = grid["baseline"]
    caption = (f"baseline: {_cell(base['mean'], base['std'], digits, scale)} (n = {base['n']})" if base
               else "baseline: no run")
    cols = grid["col_values"]
    header = f"| {row_name} \\ {col_name} | " + " | ".join(_fmt(c) for c in cols) + " |" if grid["cols_key"] \
        else f"| {row_name} | {grid['method']} |"
    lines = ["", f"## Grid: {grid['method']} over {row_name}{' × ' + col_name if col_name else ''}, "
                 f"{grid['task']} {grid['metric']}", "",
             f"Cell: {grid['cell']}. {caption}. Mean ± population std over seeds (n); **bold**: the best cell, "
             f"{grid['selection']}" + ("" if grid["higher_is_better"] else " (lower is better)") + ".", "",
             header, "|---|" + "---|" * max(1, len(cols) if grid["cols_key"] else 1)]
    for row in grid["row_values"]:
        cells = []
        for col in cols:
            cell = by_position.get((_fmt(row), _fmt(col)))
            text = f"{_cell(cell['mean'], cell['std'], digits, scale)} ({cell['n']})" if cell else "—"
            cells.append(f"**{text}**" if best == (_fmt(row), _fmt(col)) else text)
        lines.append(f"| {_fmt(row)} | " + " | ".join(cells) + " |")
    if grid.get("plot"):
        lines += ["", f"![heat map]({Path(grid['plot']).name})"]
    return lines


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
    table, analysis_settings = _read_tables(results, probe_files, drift_files, labels, labelled_files)
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
        dev_table, _ = _read_tables(select_on, [], [], labels, [])
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
