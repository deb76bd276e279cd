"""Run identity and the run table of `compare`: which run every results file, probe and drift entry is.

A run is identified by its cell, then its method (with the method's own settings), then its seed,
all read from the trainer's saved config of the checkpoint that was evaluated (`model_args`
pretrained=<run_dir>/final, or peft=<run_dir>/final for a LoRA adapter on a given base, ->
<run_dir>/config.yaml, through `dllm_jepa_train.config`; final_merged/ and epoch_<n>/ too). The cell is
every setting that changes what a run learns (backbone, task, schedule t_L / lr / epochs, ...), the
method is baseline (jepa.lambda 0), jepa, anchor or jepa+anchor, and the variant its own settings
(lambda, k, t_H, ...; k = 0 is the "no predictor" ablation, t_H = t_L "symmetric views"). A
`--run METHOD:SEED:PATH` label (PATH: an lm-eval results file, a folder of them, or a checkpoint
folder) sets method and seed; the cell still comes from the run config when there is one. Probe and
drift outputs are attached to runs by their fine-tune checkpoint paths. Settings that differ between
runs (few-shot count, steps, gen_length, block_length, generation kwargs, limit, sample count, the
task's metadata version) and between probe / drift files are flagged here (`mismatched_settings`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lm_eval.utils import simple_parse_args_string

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import SHORT_NAMES, RunIdentity, checkpoint_label, read_json, run_identity

METHOD_ORDER = ("baseline", "jepa", "anchor", "jepa+anchor")
# Settings that make two lm-eval runs incomparable when they differ; read from the results' `config`
# (which the llada_diffusion harness fills with its resolved arguments), else from `model_args`.
MODEL_SETTINGS = ("steps", "gen_length", "block_length")
# Probe/drift settings that do not change their numbers, so they may differ between files.
# compile: kernel rounding only, as device; text_file: text_source is its resolved path.
IGNORED_ANALYSIS_SETTINGS = ("batch_size", "device", "text_file", "compile")


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
    """A Hugging Face checkpoint folder (a config.json) or a peft LoRA adapter folder (adapter_config.json),
    with no results files."""
    from lm_eval_diffusion.backbone import is_adapter_dir

    is_checkpoint = (path / "config.json").is_file() or is_adapter_dir(path)
    return path.is_dir() and is_checkpoint and not any(path.rglob("results_*.json"))


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
    """lm-eval's `model_args` (a 'k=v,k=v' string or a dict) as a dict; a string's values typed as lm-eval types them.

    A string goes through `lm_eval.utils.simple_parse_args_string`, the parser lm-eval itself built the
    model with, so 'steps=64' reads as the int the model was given and a quoted path loses its quotes
    as it did there. Where it differs from a plain key=value split, today's behaviour is kept around it:
    an item without '=' is an error here (lm-eval reads it as a key with an empty value), blank items
    are skipped and keys are stripped of spaces.
    """
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return dict(value)
    if not isinstance(value, str):
        raise AnalysisError(f"results file {file}: config.model_args must be a string or object, got {value!r}")
    items = [item for item in value.split(",") if item.strip()]
    for item in items:
        if "=" not in item:
            raise AnalysisError(f"results file {file}: cannot parse model_args item {item!r} (expected key=value)")
    return {key.strip(): raw for key, raw in simple_parse_args_string(",".join(items)).items()}


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
        # pretrained=<base>,peft=<adapter>: the adapter folder is the run's checkpoint, the base is shared.
        checkpoint = model_args.get("peft") or model_args.get("pretrained")
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


def method_order(methods: set[str]) -> list[str]:
    """The paper's methods in their order, then any others alphabetically."""
    return [m for m in METHOD_ORDER if m in methods] + sorted(methods - set(METHOD_ORDER))


def sort_value(value: Any) -> tuple:
    """Sort key that puts numbers first, in numeric order, then anything else by its text."""
    return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))


def ordered_runs(runs: dict[RunKey, RunData]) -> list[RunData]:
    """Runs by cell, method (paper order first), variant and then seed."""
    methods = method_order({r.method for r in runs.values()})
    return sorted(runs.values(), key=lambda r: (
        [(k, sort_value(v)) for k, v in r.identity.cell], methods.index(r.method),
        [(k, sort_value(v)) for k, v in r.identity.variant], r.seed))


def short_name(key: str) -> str:
    """A config key as the report prints it ('jepa.lambda' -> 'λ'), else the key itself."""
    return SHORT_NAMES.get(key, key)


def format_value(value: Any) -> str:
    """A setting's value as the report prints it: floats in %g, tuples as [a, b]."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
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
    parts += [format_value(cell["data.source"])] if "data.source" in cell else []
    parts += [f"{short_name(k)} {format_value(cell[k])}" for k in ("diffusion.t_context", "optim.lr") if k in cell]
    return " · ".join(parts) or "unidentified cell (--run labels without a run config)"


def label_runs(runs: dict[RunKey, RunData]) -> dict[str, list[str]]:
    """Set each run's cell and method labels from what varies in this report; return the swept keys.

    Returns {"cell": keys that differ between cells, METHOD: variant keys that differ between that
    method's variants} (the report's "swept keys").
    """
    # dict.fromkeys and method_order, not sets: a set of strings iterates in an order that changes with
    # PYTHONHASHSEED, which made compare.json's key order (and first-seen key order) differ run to run.
    cell_keys = _differing(list(dict.fromkeys(r.identity.cell for r in runs.values())))
    swept: dict[str, list[str]] = {"cell": cell_keys}
    for method in method_order({r.method for r in runs.values()}):
        variants = list(dict.fromkeys(r.identity.variant for r in runs.values()
                                      if r.method == method and r.identity.variant))
        swept[method] = _differing(variants)
    for run in runs.values():
        cell = dict(run.identity.cell)
        run.cell_label = ", ".join(f"{short_name(k)}={format_value(cell[k])}" for k in cell_keys if k in cell)
        variant = dict(run.identity.variant)
        parts = [f"{short_name(k)}={format_value(variant[k])}" for k in swept[run.method] if k in variant]
        if run.identity.ablation:
            parts.append(run.identity.ablation)
        run.method_label = run.method + (f" ({', '.join(parts)})" if parts else "")
    return swept


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


def read_tables(results: list[str], probe_files: list[str], drift_files: list[str], labels: Labels,
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
