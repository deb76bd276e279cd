"""The demo's closing table: base -> baseline -> DLLM-JEPA per task, probe and drift, in plain words.

Reads what the demo's stages wrote (lm-eval results JSONs, the probe and drift JSONs) and returns
Markdown; no model is loaded. Per task the headline metric (HEADLINE) of the base, of each method as
mean +- population std over its seeds, and the paired delta JEPA - baseline over the seeds both have;
then the probe's held-out diffusion loss and the drift from the base in the same layout; then a few
sentences that say what the numbers show, computed from them (the thresholds are in the code, not
tuned to any outcome). The demo's `summary` stage calls `build_summary` and prints the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dllm_jepa_train.analysis.stats import mean_std  # population std, as compare's table reports it

# Per demo task: (metric key in lm-eval's results, how the table names it). The metric the paper
# reports for that task, strict forms where there is a choice.
HEADLINE: dict[str, tuple[str, str]] = {
    "gsm8k_dllm_demo": ("exact_match,strict-match", "exact match, strict"),
    "spider_exec_demo": ("exec_match,none", "execution match"),
    "nlrx_synth_demo": ("dfa_match,none", "DFA equivalence"),
    "django_code_demo": ("exact_match,none", "exact match"),
}
LEARNED = 0.2  # a method "does a task" when its mean headline score reaches this


@dataclass
class Scores:
    """Headline scores of one model over its seeds: task -> [score per seed], and scored docs per task."""

    per_task: dict[str, list[float]]
    num_docs: dict[str, int]


def read_results(folder: Path) -> tuple[dict[str, float], dict[str, int]]:
    """({task: headline score}, {task: scored docs}) from the one lm-eval results file under `folder`."""
    files = sorted(folder.rglob("results_*.json"))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one lm-eval results_*.json under {folder}, found {len(files)}")
    data = json.loads(files[0].read_text())
    scores, docs = {}, {}
    for task, (key, _) in HEADLINE.items():
        if task not in data["results"] or key not in data["results"][task]:
            raise KeyError(f"{files[0]}: no metric {key!r} for task {task!r}")
        scores[task] = float(data["results"][task][key])
        docs[task] = int(data.get("n-samples", {}).get(task, {}).get("effective", 0))
    return scores, docs


def collect(folders: list[Path]) -> Scores:
    """Scores of one model (several seeds: one results folder each)."""
    per_task: dict[str, list[float]] = {task: [] for task in HEADLINE}
    num_docs: dict[str, int] = {}
    for folder in folders:
        scores, docs = read_results(folder)
        for task, value in scores.items():
            per_task[task].append(value)
        num_docs = docs
    return Scores(per_task, num_docs)


def _cell(values: list[float], digits: int = 3) -> str:
    mean, std = mean_std(values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def _delta_cell(first: list[float], second: list[float], digits: int = 3) -> str:
    """Paired delta second - first over the seeds both have (zip: seeds in the same order)."""
    deltas = [b - a for a, b in zip(first, second)]
    mean, std = mean_std(deltas)
    return f"{mean:+.{digits}f} ± {std:.{digits}f}" if len(deltas) > 1 else f"{mean:+.{digits}f}"


def _by_checkpoint(entries: list[dict]) -> dict[str, dict]:
    return {str(Path(e["checkpoint"]).resolve()): e for e in entries}


def build_summary(base: Path, baselines: list[Path], jepas: list[Path], probe: Path, drift: Path,
                  checkpoints: dict[str, list[Path]], settings: str) -> str:
    """The Markdown summary. `baselines`/`jepas`: one lm-eval output folder per seed, same seed order;
    `checkpoints`: {"baseline": [...], "jepa": [...]} fine-tune folders in that order (for probe/drift)."""
    base_scores = collect([base])
    methods = {"baseline": collect(baselines), "jepa": collect(jepas)}
    n = len(baselines)
    lines = [
        f"## Demo summary: base -> baseline -> DLLM-JEPA ({n} seed{'s' if n > 1 else ''} per method)",
        "",
        settings,
        "",
        "| task (headline metric) | docs | base | baseline | DLLM-JEPA | JEPA - baseline (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for task, (_, name) in HEADLINE.items():
        b, j = methods["baseline"].per_task[task], methods["jepa"].per_task[task]
        lines.append(f"| {task} ({name}) | {base_scores.num_docs[task]} | {base_scores.per_task[task][0]:.3f} | "
                     f"{_cell(b)} | {_cell(j)} | {_delta_cell(b, j)} |")

    probe_data = json.loads(probe.read_text())
    drift_data = json.loads(drift.read_text())
    probe_by = _by_checkpoint(probe_data["finetunes"])
    drift_by = _by_checkpoint(drift_data["finetunes"])
    probe_loss = {m: [probe_by[str(c.resolve())]["loss"] for c in checkpoints[m]] for m in methods}
    drift_mean = {m: [drift_by[str(c.resolve())]["mean"] for c in checkpoints[m]] for m in methods}
    num_probe = probe_data["base"]["num_docs"]
    lines.append(f"| probe: held-out diffusion loss at 50% masking, lower = less forgetting | {num_probe} | "
                 f"{probe_data['base']['loss']:.3f} | {_cell(probe_loss['baseline'])} | {_cell(probe_loss['jepa'])} | "
                 f"{_delta_cell(probe_loss['baseline'], probe_loss['jepa'])} |")
    lines.append(f"| drift: mean 1 - cos to the base over layers, lower = closer to the base | "
                 f"{drift_data['settings']['num_docs']} | 0 | {_cell(drift_mean['baseline'], 4)} | "
                 f"{_cell(drift_mean['jepa'], 4)} | {_delta_cell(drift_mean['baseline'], drift_mean['jepa'], 4)} |")
    lines += ["", "What this shows:"]
    lines += [f"- {s}" for s in conclusions(base_scores, methods, probe_data["base"]["loss"], probe_loss, drift_mean)]
    return "\n".join(lines) + "\n"


def conclusions(base: Scores, methods: dict[str, Scores], base_loss: float, probe_loss: dict[str, list[float]],
                drift_mean: dict[str, list[float]]) -> list[str]:
    """Plain sentences computed from the numbers in the table."""
    out = []
    means = {m: {t: mean_std(scores.per_task[t])[0] for t in HEADLINE} for m, scores in methods.items()}
    learned = [t for t in HEADLINE
               if all(means[m][t] >= LEARNED and means[m][t] > base.per_task[t][0] for m in methods)]
    if learned:
        parts = [f"{t} {base.per_task[t][0]:.2f} -> {means['baseline'][t]:.2f} / {means['jepa'][t]:.2f}"
                 for t in learned]
        out.append(f"Fine-tuning taught {len(learned)} of {len(HEADLINE)} tasks: both methods score >= {LEARNED} and "
                   f"above the base on {', '.join(learned)} (base -> baseline / JEPA: {'; '.join(parts)}).")
    else:
        out.append(f"No task reached {LEARNED} for both methods: at this size the fine-tunes did not learn the tasks.")
    rest = [t for t in HEADLINE if t not in learned]
    if learned and rest:
        why = " (GSM8K asks for multi-digit arithmetic, beyond a model this small)" if "gsm8k_dllm_demo" in rest else ""
        out.append(f"Not learned at this scale: {', '.join(rest)}{why}.")
    n = len(next(iter(methods["baseline"].per_task.values())))
    deltas = {t: [j - b for b, j in zip(methods["baseline"].per_task[t], methods["jepa"].per_task[t])] for t in HEADLINE}
    if n < 2:
        out.append("JEPA vs baseline: one seed each, so a difference between them has no error bar; "
                   "run with --seeds 3 before reading anything into it.")
    else:
        delta_stats = {t: mean_std(d) for t, d in deltas.items()}
        clear = [t for t, (mean, std) in delta_stats.items() if abs(mean) > std and mean != 0]
        if clear:
            out.append("JEPA vs baseline, where the paired delta exceeds its spread over seeds: " + ", ".join(
                f"{t} {'higher' if delta_stats[t][0] > 0 else 'lower'} ({delta_stats[t][0]:+.3f})" for t in clear)
                + "; elsewhere the two are within seed noise.")
        else:
            out.append(f"JEPA vs baseline: every paired delta is within its spread over the {n} seeds: no difference shown.")
    loss = {m: mean_std(v)[0] for m, v in probe_loss.items()}
    out.append(f"Forgetting: the held-out loss on the pre-training text went from {base_loss:.3f} (base) to "
               f"{loss['baseline']:.3f} (baseline) and {loss['jepa']:.3f} (JEPA); "
               + ("JEPA forgot less." if loss["jepa"] < loss["baseline"] else "JEPA did not forget less."))
    drift = {m: mean_std(v)[0] for m, v in drift_mean.items()}
    out.append(f"Drift: JEPA's hidden states moved {'less' if drift['jepa'] < drift['baseline'] else 'more'} "
               f"from the base than the baseline's ({drift['jepa']:.4f} vs {drift['baseline']:.4f}).")
    return out
