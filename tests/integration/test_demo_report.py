"""The demo's summary table: headline scores per model, mean +- std over seeds, paired deltas, and the
sentences drawn from them, on hand-written lm-eval / probe / drift files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dllm_jepa_train.toy import report


def _results(folder: Path, scores: dict[str, float], docs: int = 60) -> Path:
    """An lm-eval output folder with one results file holding these headline scores."""
    results = {}
    for task, value in scores.items():
        key, _ = report.HEADLINE[task]
        results[task] = {key: value, "other_metric,none": 0.5}
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "results_2026.json").write_text(json.dumps({
        "results": results, "n-samples": {t: {"original": 100, "effective": docs} for t in scores}}))
    return folder


def _scores(gsm8k: float, spider: float, nlrx: float, django: float) -> dict[str, float]:
    return dict(zip(report.HEADLINE, (gsm8k, spider, nlrx, django)))


@pytest.fixture
def two_seeds(tmp_path):
    base = _results(tmp_path / "base", _scores(0.0, 0.05, 0.10, 0.0))
    baselines = [_results(tmp_path / "b1", _scores(0.0, 0.30, 0.40, 0.10)),
                 _results(tmp_path / "b2", _scores(0.0, 0.40, 0.50, 0.30))]
    jepas = [_results(tmp_path / "j1", _scores(0.0, 0.36, 0.40, 0.20)),
             _results(tmp_path / "j2", _scores(0.0, 0.50, 0.48, 0.30))]
    ckpt = {m: [tmp_path / f"{m}{s}" / "final" for s in (1, 2)] for m in ("baseline", "jepa")}
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"base": {"loss": 2.0, "num_docs": 50}, "finetunes": [
        {"checkpoint": str(ckpt["baseline"][0]), "loss": 2.5}, {"checkpoint": str(ckpt["baseline"][1]), "loss": 2.7},
        {"checkpoint": str(ckpt["jepa"][0]), "loss": 2.4}, {"checkpoint": str(ckpt["jepa"][1]), "loss": 2.4}]}))
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps({"settings": {"num_docs": 50}, "finetunes": [
        {"checkpoint": str(ckpt["baseline"][0]), "mean": 0.10}, {"checkpoint": str(ckpt["baseline"][1]), "mean": 0.12},
        {"checkpoint": str(ckpt["jepa"][0]), "mean": 0.20}, {"checkpoint": str(ckpt["jepa"][1]), "mean": 0.22}]}))
    return base, baselines, jepas, probe, drift, ckpt


def test_mean_std_is_the_population_form():
    assert report.mean_std([1.0]) == (1.0, 0.0)
    mean, std = report.mean_std([0.3, 0.5])
    assert mean == pytest.approx(0.4) and std == pytest.approx(0.1)


def test_summary_rows_hold_base_means_stds_and_paired_deltas(two_seeds):
    text = report.build_summary(*two_seeds, settings="SETTINGS LINE")
    rows = {line.split(" |")[0].lstrip("| "): [c.strip() for c in line.strip("|").split("|")[1:]]
            for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert "2 seeds per method" in text and "SETTINGS LINE" in text
    # spider: base 0.05; baseline (0.30, 0.40); JEPA (0.36, 0.50); deltas (+0.06, +0.10).
    assert rows["spider_exec_demo (execution match)"] == ["60", "0.050", "0.350 ± 0.050", "0.430 ± 0.070", "+0.080 ± 0.020"]
    assert rows["nlrx_synth_demo (DFA equivalence)"][4] == "-0.010 ± 0.010"
    probe_row = next(v for k, v in rows.items() if k.startswith("probe"))
    assert probe_row == ["50", "2.000", "2.600 ± 0.100", "2.400 ± 0.000", "-0.200 ± 0.100"]
    drift_row = next(v for k, v in rows.items() if k.startswith("drift"))
    assert drift_row[2:] == ["0.1100 ± 0.0100", "0.2100 ± 0.0100", "+0.1000 ± 0.0000"]


def test_conclusions_say_what_the_numbers_show(two_seeds):
    text = report.build_summary(*two_seeds, settings="")
    said = text.split("What this shows:")[1]
    # spider and nlrx: both methods >= 0.2 and above the base; django: baseline mean 0.2 too, JEPA 0.25.
    assert "taught 3 of 4 tasks" in said and "spider_exec_demo, nlrx_synth_demo, django_code_demo" in said
    assert "Not learned at this scale: gsm8k_dllm_demo" in said
    # spider's delta (+0.08 +- 0.02) exceeds its spread; nlrx's (-0.01 +- 0.01) does not.
    assert "spider_exec_demo higher (+0.080)" in said and "nlrx_synth_demo lower" not in said
    assert "JEPA forgot less." in said and "moved more" in said


def test_one_seed_says_there_is_no_error_bar(two_seeds):
    base, baselines, jepas, probe, drift, ckpt = two_seeds
    text = report.build_summary(base, baselines[:1], jepas[:1], probe, drift,
                                {m: c[:1] for m, c in ckpt.items()}, settings="")
    assert "1 seed per method" in text and "no error bar" in text
    assert "0.300 |" in text  # a single seed prints no ± spread


def test_a_missing_metric_or_results_file_is_named(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="results_"):
        report.read_results(tmp_path / "empty")
    folder = _results(tmp_path / "partial", _scores(0.0, 0.0, 0.0, 0.0))
    file = next(folder.rglob("results_*.json"))
    data = json.loads(file.read_text())
    del data["results"]["nlrx_synth_demo"]
    file.write_text(json.dumps(data))
    with pytest.raises(KeyError, match="nlrx_synth_demo"):
        report.read_results(folder)
