"""Analysis commands on tiny checkpoints: probe, drift, collapse statistics, compare over real lm-eval output."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import method_name, plan_batches, run_identity
from dllm_jepa_train.analysis.compare import run_compare
from dllm_jepa_train.analysis.drift import DriftSettings, run_drift, summarize
from dllm_jepa_train.analysis.probe import ProbeSettings, document_mask, num_masked, run_probe
from dllm_jepa_train.analysis.stats import mean_std, pearson
from dllm_jepa_train.objectives import collapse_stats

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TINY_TASK = PROJECT_ROOT / "tests" / "assets" / "tiny_task"
DOCS = [
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "SELECT count(*) FROM singer WHERE age > 20",
    "lines containing the word dog followed by a number",
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?",
    "baz = foo ( bar )",
    "call the function foo with an argument bar, substitute the result for baz.",
    "(.*[0-9].*)&(.*[a-z].*)",
]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "heldout.txt"
    # Blank lines are not documents and must be skipped.
    path.write_text("\n".join(DOCS[:3]) + "\n\n" + "\n".join(DOCS[3:]) + "\n")
    return path


def one_sgd_step(source: Path, out: Path, tokenizer) -> Path:
    """Copy of a tiny generic checkpoint after one plain-torch SGD step on a masked-LM loss."""
    from transformers import AutoModelForMaskedLM

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(source)
    model.train()
    ids = torch.tensor([tokenizer(DOCS[0], add_special_tokens=False)["input_ids"]])
    is_masked = torch.arange(ids.shape[1]) % 2 == 0
    noisy = torch.where(is_masked, torch.full_like(ids, tokenizer.mask_token_id), ids)
    labels = torch.where(is_masked, ids, torch.full_like(ids, -100))
    model(input_ids=noisy, labels=labels).loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 1.0 * p.grad
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def make_run(root: Path, name: str, checkpoint: Path, seed: int, jepa_lambda: float, l2_lambda: float = 0.0) -> Path:
    """<root>/<name>/final (a copy of `checkpoint`) with the trainer's own config.yaml beside it."""
    from dllm_jepa_train.config import TrainConfig, save_config

    run_dir = root / name
    shutil.copytree(checkpoint, run_dir / "final")
    cfg = TrainConfig()
    cfg.run.seed, cfg.run.output_dir = seed, str(run_dir)
    cfg.jepa.lambda_, cfg.anchor.l2_lambda = jepa_lambda, l2_lambda
    cfg.diffusion.t_context, cfg.jepa.t_target = 0.2, 0.7
    save_config(cfg, run_dir / "config.yaml")
    return run_dir / "final"


@pytest.fixture(scope="module")
def stepped(tiny_checkpoints, tiny_tokenizer, tmp_path_factory) -> Path:
    return one_sgd_step(tiny_checkpoints["generic"], tmp_path_factory.mktemp("stepped") / "ckpt", tiny_tokenizer)


@pytest.fixture(scope="module")
def runs(tiny_checkpoints, stepped, tmp_path_factory) -> dict[str, Path]:
    """A baseline run (the untouched base) and a JEPA run (one SGD step), both seed 1."""
    root = tmp_path_factory.mktemp("runs")
    return {"baseline": make_run(root, "baseline_s1", tiny_checkpoints["generic"], 1, 0.0),
            "jepa": make_run(root, "jepa_s1", stepped, 1, 1.0)}


# ----------------------------------------------------------------------------------------------- probe
def test_document_mask_depends_only_on_seed_and_index():
    a = document_mask(11, 0.5, seed=3, index=7)
    assert torch.equal(a, document_mask(11, 0.5, seed=3, index=7))
    assert int(a.sum()) == 6 == num_masked(11, 0.5)  # 5.5 rounds half up
    others = [document_mask(11, 0.5, seed=3, index=i) for i in range(8)] + [document_mask(11, 0.5, seed=4, index=7)]
    assert sum(torch.equal(a, o) for o in others) == 1  # only itself
    assert num_masked(1, 0.5) == 1 and num_masked(4, 1.0) == 4


def test_document_mask_from_first_never_masks_earlier_positions():
    for index in range(50):
        mask = document_mask(6, 1.0, seed=0, index=index, first=1)
        assert mask.tolist() == [False] + [True] * 5
        half = document_mask(7, 0.5, seed=0, index=index, first=1)
        assert not half[0] and int(half.sum()) == num_masked(6, 0.5) == 3
    with pytest.raises(ValueError, match="no maskable position"):
        document_mask(1, 0.5, seed=0, index=0, first=1)


def _poison_position_0(monkeypatch):
    """Make every model's (aligned) logits at position 0 NaN: a loss that reads them is NaN."""
    from lm_eval_diffusion.backbone import Backbone

    forward = Backbone.forward

    def poisoned(self, input_ids, attention_mask=None, output_hidden_states=False):
        logits, hidden = forward(self, input_ids, attention_mask, output_hidden_states)
        logits = logits.clone()
        logits[:, 0] = float("nan")
        return logits, hidden

    monkeypatch.setattr(Backbone, "forward", poisoned)


def test_probe_never_scores_position_0_of_a_dream_model(tiny_checkpoints, text_file, monkeypatch):
    """Dream's logits are shifted right: the one at position 0 predicts token 1, so position 0 is never scored."""
    settings = ProbeSettings(num_docs=6, max_length=24, batch_size=1, mask_rate=1.0, text_file=str(text_file),
                             device="cpu")
    dream = str(tiny_checkpoints["dream"])
    clean = run_probe(dream, [], settings)
    assert clean["settings"]["first_maskable"] == 1
    assert clean["base"]["num_masked"] == clean["base"]["num_tokens"] - clean["base"]["num_docs"]
    _poison_position_0(monkeypatch)
    assert run_probe(dream, [], settings)["base"]["loss"] == clean["base"]["loss"]
    # The poison is real: LLaDA's position 0 is its own token's logit and is scored (mask rate 1).
    with pytest.raises(AnalysisError, match="not finite|non-finite|nan"):
        run_probe(str(tiny_checkpoints["llada"]), [], settings)


def test_probe_refuses_to_compare_shifted_and_unshifted_logits(tiny_checkpoints, text_file):
    settings = ProbeSettings(num_docs=2, max_length=8, text_file=str(text_file), device="cpu")
    with pytest.raises(AnalysisError, match="shifted"):
        run_probe(str(tiny_checkpoints["llada"]), [str(tiny_checkpoints["dream"])], settings)


def test_plan_batches_covers_rows_and_keeps_equal_lengths_without_padding():
    lengths = [3, 5, 5, 2, 5, 3]
    padded = plan_batches(lengths, 4, honours_padding=True)
    assert padded == [[1, 2, 4, 0], [5, 3]]  # longest first, stable
    unpadded = plan_batches(lengths, 4, honours_padding=False)
    assert sorted(i for b in unpadded for i in b) == list(range(6))
    assert all(len({lengths[i] for i in b}) == 1 for b in unpadded)


def test_probe_identical_checkpoints_give_zero_delta_and_batch_size_does_not_matter(
    tiny_checkpoints, tiny_tokenizer, text_file
):
    base = str(tiny_checkpoints["generic"])
    settings = ProbeSettings(num_docs=6, max_length=24, batch_size=1, text_file=str(text_file), device="cpu")
    one = run_probe(base, [base], settings)
    four = run_probe(base, [], ProbeSettings(**{**settings.__dict__, "batch_size": 4}))
    assert one["finetunes"][0]["delta"] == 0.0
    lengths = [min(len(tiny_tokenizer(d, add_special_tokens=False)["input_ids"]), 24) for d in DOCS[:6]]
    assert one["base"]["num_docs"] == 6 and one["base"]["num_tokens"] == sum(lengths)
    assert one["base"]["num_masked"] == sum(num_masked(n, 0.5) for n in lengths) == four["base"]["num_masked"]
    assert math.isclose(one["base"]["loss"], four["base"]["loss"], rel_tol=1e-5)
    again = run_probe(base, [], ProbeSettings(**{**settings.__dict__, "batch_size": 4}))
    assert again["base"]["loss"] == four["base"]["loss"]  # deterministic
    other_seed = run_probe(base, [], ProbeSettings(**{**settings.__dict__, "seed": 1}))
    assert other_seed["base"]["loss"] != one["base"]["loss"]  # the seed does choose the masks


def test_probe_batches_equal_lengths_for_a_model_that_ignores_padding(tiny_checkpoints, text_file):
    base = str(tiny_checkpoints["llada_nopad"])
    settings = ProbeSettings(num_docs=7, max_length=12, batch_size=1, text_file=str(text_file), device="cpu")
    one = run_probe(base, [], settings)
    four = run_probe(base, [], ProbeSettings(**{**settings.__dict__, "batch_size": 4}))
    assert math.isclose(one["base"]["loss"], four["base"]["loss"], rel_tol=1e-5)


# ----------------------------------------------------------------------------------------------- drift
def test_drift_zero_for_identical_and_positive_after_one_step(tiny_checkpoints, stepped, text_file):
    base = str(tiny_checkpoints["generic"])
    settings = DriftSettings(num_samples=5, max_length=24, batch_size=2, text_file=str(text_file), device="cpu")
    result = run_drift(base, [base, str(stepped)], settings)
    same, moved = result["finetunes"]
    assert result["num_hidden_states"] == 3  # embeddings + 2 blocks
    assert result["layers"] == [1, 2] and len(same["per_layer"]) == 2  # the blocks only (§5)
    assert max(abs(v) for v in same["per_layer"]) < 1e-6
    assert moved["mean"] > 1e-4 and min(moved["per_layer"]) > 0
    assert set(moved["thirds"]) == {"early", "middle", "late"}
    assert result["ratio"]["mean"] == pytest.approx(0.0, abs=1e-6)  # identical / moved
    reversed_ = run_drift(base, [str(stepped), base], settings)
    assert reversed_["ratio"]["mean"] is None  # over a zero drift: undefined, not a huge number


def test_drift_summary_thirds():
    summary = summarize([0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 2, 3, 4, 5, 6, 7])
    assert summary["mean"] == pytest.approx(3.0)
    assert summary["third_layers"] == {"early": [1, 2, 3], "middle": [4, 5], "late": [6, 7]}
    assert summary["thirds"] == {"early": 1.0, "middle": 3.5, "late": 5.5}
    llada_8b = summarize([0.0] * 32, list(range(1, 33)))["third_layers"]  # 32 layers: 11 / 11 / 10
    assert llada_8b == {"early": list(range(1, 12)), "middle": list(range(12, 23)), "late": list(range(23, 33))}


@pytest.mark.parametrize("family", ["llada", "dream"])
def test_drift_has_one_value_per_transformer_layer(tiny_checkpoints, text_file, family):
    """LLaDA- and Dream-like models return N + 1 hidden states; drift counts the N layers, the embeddings on request."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_checkpoints[family], trust_remote_code=True)
    num_layers = config.n_layers if family == "llada" else config.num_hidden_layers
    other = tiny_checkpoints["llada_nopad"] if family == "llada" else tiny_checkpoints[family]
    settings = DriftSettings(num_samples=3, max_length=16, batch_size=1, text_file=str(text_file), device="cpu")
    layers_only = run_drift(str(tiny_checkpoints[family]), [str(other)], settings)
    with_embeddings = run_drift(str(tiny_checkpoints[family]), [str(other)],
                                DriftSettings(**{**settings.__dict__, "include_embeddings": True}))
    entry, entry_all = layers_only["finetunes"][0], with_embeddings["finetunes"][0]
    assert len(entry["per_layer"]) == num_layers and layers_only["layers"] == list(range(1, num_layers + 1))
    assert len(entry_all["per_layer"]) == num_layers + 1 and with_embeddings["layers"][0] == 0
    assert entry_all["per_layer"][1:] == pytest.approx(entry["per_layer"], abs=1e-12)
    assert entry["mean"] == pytest.approx(sum(entry["per_layer"]) / num_layers)
    if family == "llada":  # two different random models: every layer has moved
        assert min(entry["per_layer"]) > 1e-3 and entry_all["third_layers"]["early"][0] == 0


# -------------------------------------------------------------------------------------------- collapse
def test_collapse_stats_of_known_matrices():
    eye = collapse_stats(torch.eye(8))
    assert eye["effective_rank"] == pytest.approx(8.0)
    assert eye["cosine_diversity"] == pytest.approx(1.0)  # orthogonal rows
    rank_one = collapse_stats(torch.outer(torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.arange(1.0, 7.0)))
    assert rank_one["effective_rank"] == pytest.approx(1.0, abs=1e-5)
    same = collapse_stats(torch.tensor([[0.3, -1.0, 2.0]]).repeat(10, 1))
    assert same["cosine_diversity"] == pytest.approx(0.0, abs=1e-6)
    assert same["per_dim_std_mean"] == pytest.approx(0.0, abs=1e-7)


def test_cosine_diversity_uses_exactly_num_pairs_pairs_of_distinct_rows():
    """A.7's "5,000 random pairs": 100 rows have 4,950 distinct pairs, yet 5,000 are drawn (with replacement)."""
    from dllm_jepa_train.analysis.collapse import CollapseSettings, run_collapse
    from dllm_jepa_train.objectives import random_pairs

    first, second = random_pairs(100, 5000, seed=7)
    assert first.shape == second.shape == (5000,)
    assert bool((first != second).all()) and int(first.min()) >= 0 and int(second.max()) <= 99
    assert len({(int(a), int(b)) for a, b in zip(first, second)}) < 5000  # more draws than distinct pairs
    z = torch.randn(100, 6, generator=torch.Generator().manual_seed(0))
    unit = z / z.norm(dim=1, keepdim=True)
    by_hand = 1.0 - sum(abs(float(unit[a] @ unit[b])) for a, b in zip(first.tolist(), second.tolist())) / 5000
    assert collapse_stats(z, seed=7)["cosine_diversity"] == pytest.approx(by_hand, abs=1e-6)
    with pytest.raises(AnalysisError, match="--num-pairs must be >= 1"):
        run_collapse("unused", CollapseSettings(num_pairs=0))


def test_collapse_defaults_to_a7_online_weights_for_both_views(runs, tiny_checkpoints, text_file, tmp_path):
    from safetensors.torch import save_file
    from transformers import AutoModelForMaskedLM

    from dllm_jepa_train.analysis.__main__ import build_parser, run_command
    from dllm_jepa_train.analysis.collapse import CollapseSettings, run_collapse

    jepa = runs["jepa"]
    (jepa / "jepa").mkdir(exist_ok=True)
    base = AutoModelForMaskedLM.from_pretrained(tiny_checkpoints["generic"])
    ema = {n: p.detach().clone().contiguous() for n, p in base.named_parameters()}  # the base: an EMA that lags
    save_file(ema, str(jepa / "jepa" / "ema.safetensors"))
    out = tmp_path / "collapse.json"
    run_command(build_parser().parse_args(
        ["collapse", "--checkpoint", str(jepa), "--text-file", str(text_file), "--num-samples", "6",
         "--num-pairs", "50", "--batch-size", "3", "--device", "cpu", "--out", str(out)]))
    default = json.loads(out.read_text())
    assert default["settings"]["target"] == "online" and default["settings"]["data"] == "wikitext"
    assert default["settings"]["t_context"] == [0.2, 0.2] and default["settings"]["t_target"] == [0.7, 0.7]
    assert default["settings"]["data_source"] == str(text_file.resolve()) and default["settings"]["num_rows"] == 6
    assert default["settings"]["seed"] == 1 and default["dim"] == 64

    settings = CollapseSettings(text_file=str(text_file), num_samples=6, num_pairs=50, batch_size=3, device="cpu")
    online = run_collapse(str(jepa), settings)
    assert online["z_context"] == default["z_context"] and online["z_target"] == default["z_target"]
    with_ema = run_collapse(str(jepa), CollapseSettings(**{**settings.__dict__, "target": "ema"}))
    assert with_ema["settings"]["target"] == "ema"
    assert with_ema["z_context"] == online["z_context"]  # z_L always from the checkpoint
    assert with_ema["z_target"] != online["z_target"]  # the default did not read the EMA file beside it
    for stats in (online["z_context"], online["z_target"]):
        assert 1.0 <= stats["effective_rank"] <= 6.0 and 0.0 <= stats["cosine_diversity"] <= 1.0
    with pytest.raises(AnalysisError, match="does not exist"):
        run_collapse(str(runs["baseline"]), CollapseSettings(**{**settings.__dict__, "target": "ema"}))


def test_collapse_of_a_base_checkpoint_uses_a7_rates_unless_given(tiny_checkpoints, text_file):
    from dllm_jepa_train.analysis.collapse import CollapseSettings, run_collapse

    base = str(tiny_checkpoints["llada"])  # no config.yaml beside it
    settings = CollapseSettings(text_file=str(text_file), num_samples=5, num_pairs=20, batch_size=5, device="cpu")
    default = run_collapse(base, settings)
    assert default["run_config"] is None and default["settings"]["target"] == "online"
    assert default["settings"]["t_context"] == [0.2, 0.2] and default["settings"]["t_target"] == [0.7, 0.7]
    given = run_collapse(base, CollapseSettings(**{**settings.__dict__, "t_context": "0.1", "t_target": "0.9"}))
    assert given["settings"]["t_context"] == [0.1, 0.1] and given["settings"]["t_target"] == [0.9, 0.9]
    assert given["z_target"] != default["z_target"]
    with pytest.raises(AnalysisError, match="--data run"):
        run_collapse(base, CollapseSettings(**{**settings.__dict__, "data": "run", "text_file": None}))


# -------------------------------------------------------------------------------------------- identity
@pytest.mark.parametrize("lam, l2, method", [(0.0, 0.0, "baseline"), (0.5, 0.0, "jepa"), (0.0, 0.1, "anchor")])
def test_run_identity_from_saved_config(tmp_path, tiny_checkpoints, lam, l2, method):
    final = make_run(tmp_path, "r", tiny_checkpoints["generic"], 777, lam, l2)
    found = run_identity(str(final))
    assert (found.method, found.seed, found.config) == (method, 777, final.parent / "config.yaml")
    assert method_name(lam, l2) == method
    cell = dict(found.cell)
    assert cell["data.source"] == "gsm8k" and cell["diffusion.t_context"] == 0.2 and "run.seed" not in cell
    assert ("jepa.lambda" in dict(found.variant)) == (lam > 0)  # a baseline's jepa.* settings are moot
    assert cell["optim.grad_accum"] == 2  # no global batch: the accumulation is part of the recipe
    (final.parent / "base").mkdir()  # a tiny run's generated base model is not the run's fine-tune
    assert run_identity(str(final.parent / "base")) is None


def test_mean_std_and_pearson_by_hand():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(1.25)))  # population std
    assert pearson([1.0, 2.0, 3.0], [2.0, 4.0, 6.0]) == pytest.approx(1.0)
    assert pearson([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]) == pytest.approx(-0.5)
    assert pearson([1.0], [1.0]) is None and pearson([1.0, 1.0], [0.0, 2.0]) is None


# --------------------------------------------------------------------------------------------- compare
@pytest.fixture(scope="module")
def lm_eval_outputs(runs, tmp_path_factory) -> Path:
    """Real `lm_eval.simple_evaluate` output of both runs on the tiny generation task, saved by lm-eval's writer."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    import lm_eval_diffusion_hook  # noqa: F401  (registers llada_diffusion, as the installed .pth does)

    out = tmp_path_factory.mktemp("lm_eval_out")
    manager = TaskManager(include_path=str(TINY_TASK))
    for checkpoint in runs.values():
        tracker = EvaluationTracker(output_path=str(out))
        results = lm_eval.simple_evaluate(
            model="llada_diffusion", model_args=f"pretrained={checkpoint},steps=2,gen_length=4,block_length=4",
            tasks=["tiny_echo"], limit=2, device="cpu", evaluation_tracker=tracker, task_manager=manager,
            bootstrap_iters=0,
        )
        tracker.save_results_aggregated(results=results)
    return out


@pytest.fixture(scope="module")
def analysis_outputs(runs, tiny_checkpoints, text_file, tmp_path_factory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("analysis_out")
    base, finetunes = str(tiny_checkpoints["generic"]), [str(runs["baseline"]), str(runs["jepa"])]
    probe = run_probe(base, finetunes, ProbeSettings(num_docs=4, max_length=16, text_file=str(text_file), device="cpu"))
    drift = run_drift(base, finetunes,
                      DriftSettings(num_samples=4, max_length=16, text_file=str(text_file), device="cpu"))
    (out / "probe.json").write_text(json.dumps(probe))
    (out / "drift.json").write_text(json.dumps(drift))
    return out / "probe.json", out / "drift.json"


def test_compare_on_real_lm_eval_output(lm_eval_outputs, analysis_outputs, runs, tmp_path):
    from matplotlib.image import imread

    from dllm_jepa_train.analysis.__main__ import main

    files = sorted(lm_eval_outputs.rglob("results_*.json"))
    assert len(files) == 2
    probe, drift = analysis_outputs
    out = tmp_path / "report"
    assert main(["compare", "--results", str(lm_eval_outputs), "--probe", str(probe), "--drift", str(drift),
                 "--out", str(out)]) == 0
    report = json.loads((out / "compare.json").read_text())
    assert [(r["method"], r["seed"]) for r in report["runs"]] == [("baseline", 1), ("jepa", 1)]
    comparison = report["comparisons"][0]
    rows = {(r["task"], r["metric"]): r for r in comparison["rows"]}
    row = rows[("tiny_echo", "exact_match,none")]
    base_value = report["runs"][0]["metrics"]["tiny_echo"]["exact_match,none"]
    jepa_value = report["runs"][1]["metrics"]["tiny_echo"]["exact_match,none"]
    assert row["n"] == 1 and row["baseline_mean"] == base_value and row["delta_mean"] == jepa_value - base_value
    assert row["baseline_std"] == 0.0
    drift_row = rows[("(drift)", "mean")]
    assert abs(drift_row["baseline_mean"]) < 1e-6 < drift_row["method_mean"]  # the baseline run is the base
    assert rows[("(probe)", "loss delta to base")]["baseline_mean"] == 0.0
    assert comparison["drift_ratio"]["mean"] is None  # jepa / a zero baseline drift is undefined
    assert [r["task"] for r in comparison["rows"]][0] == "tiny_echo"  # lm-eval tasks first
    assert report["flags"] == {"missing_seeds": [], "mismatched_settings": [], "duplicates": []}
    markdown = (out / "compare.md").read_text()
    assert "## baseline → jepa" in markdown and "| tiny_echo | exact_match,none |" in markdown
    assert "- none" in markdown  # no flags
    for name in ("drift_curves.png", "drift_vs_forgetting.png"):
        path = out / name
        assert path.stat().st_size > 1024
        assert imread(path).ndim == 3


def test_compare_flags_missing_seed_and_mismatched_settings(lm_eval_outputs, runs, tmp_path):
    files = sorted(lm_eval_outputs.rglob("results_*.json"))
    jepa_file = next(f for f in files if "jepa_s1" in json.loads(f.read_text())["config"]["model_args"])
    data = json.loads(jepa_file.read_text())
    data["configs"]["tiny_echo"]["num_fewshot"] = 3
    data["config"]["steps"] = 64
    data["config"]["model_args"] = data["config"]["model_args"].replace("steps=2", "steps=64")
    extra = tmp_path / "jepa_seed2.json"
    extra.write_text(json.dumps(data))
    report = run_compare([str(lm_eval_outputs)], [f"jepa:2:{extra}"], [], [], str(tmp_path / "report"))
    flags = report["flags"]
    assert flags["missing_seeds"] == ["jepa vs baseline: seed 2: jepa run present, baseline run missing"]
    mismatched = "\n".join(flags["mismatched_settings"])
    assert "tiny_echo: num_fewshot differs between runs: 0 (baseline s1, jepa s1); 3 (jepa s2)" in mismatched
    assert "tiny_echo: steps differs between runs: 2 (baseline s1, jepa s1); 64 (jepa s2)" in mismatched
    assert "gen_length" not in mismatched and "block_length" not in mismatched
    row = next(r for r in report["comparisons"][0]["rows"] if r["task"] == "tiny_echo")
    assert row["n"] == 1 and row["seeds"] == [1]  # seed 2 has no baseline to pair with
    assert "**missing seed**" in report["markdown"] and "**mismatched settings**" in report["markdown"]


def test_compare_without_run_config_asks_for_a_label(lm_eval_outputs, tmp_path):
    data = json.loads(sorted(lm_eval_outputs.rglob("results_*.json"))[0].read_text())
    data["config"]["model_args"] = "pretrained=/nonexistent/final,steps=2"
    orphan = tmp_path / "results_orphan.json"
    orphan.write_text(json.dumps(data))
    with pytest.raises(AnalysisError, match=r"has no run config.*--run METHOD:SEED"):
        run_compare([str(orphan)], [], [], [], str(tmp_path / "report"))


# -------------------------------------------------------------------------------------- bad input (CLI)
@pytest.mark.subprocess
def test_bad_input_exits_2_with_a_clear_message(tiny_checkpoints, tmp_path):
    from dllm_jepa_train.toy.models import build_tiny_checkpoint, build_tokenizer

    small = build_tiny_checkpoint(tmp_path / "small_vocab", "generic", build_tokenizer(vocab_size=320), seed=3)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    malformed = tmp_path / "results_broken.json"
    malformed.write_text('{"results": {"tiny_echo": ')
    base = str(tiny_checkpoints["generic"])
    cases = {
        "vocab": (["drift", "--base", base, "--finetunes", str(small), "--text-file", str(empty.with_name("t.txt"))],
                  [f"checkpoints {base} and {small} have different vocabulary sizes"]),
        "json": (["compare", "--results", str(malformed), "--out", str(tmp_path / "r")],
                 [f"results file {malformed} is not valid JSON"]),
        "empty": (["probe", "--base", base, "--finetunes", base, "--text-file", str(empty)],
                  [f"text file {empty} has no non-empty lines"]),
        "offline": (["probe", "--base", base, "--finetunes", base, "--num-docs", "2"],
                    ["Salesforce/wikitext", "pass --text-file"]),
    }
    (tmp_path / "t.txt").write_text("\n".join(DOCS) + "\n")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "dllm_jepa_train.analysis", *argv], cwd=tmp_path,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, (argv, _) in cases.items()}
    for name, proc in procs.items():
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (name, stderr)
        assert "Traceback" not in stderr, (name, stderr)
        last = stderr.strip().splitlines()[-1]
        assert last.startswith("error: "), (name, stderr)
        for text in cases[name][1]:
            assert text in last, (name, last)


def test_compare_statistics_and_correlations_by_hand(tmp_path):
    """Three seeds per method, labelled by checkpoint folder; every number below is computed by hand."""
    deltas = {"baseline": [0.1, 0.2, 0.3], "jepa": [0.03, 0.01, 0.02]}
    drifts = {"baseline": [0.2, 0.4, 0.6], "jepa": [0.1, 0.2, 0.3]}
    labels, probe_entries, drift_entries = [], [], []
    for method in deltas:
        for i, seed in enumerate((42, 123, 777)):
            ckpt = tmp_path / f"{method}_{seed}" / "final"
            ckpt.mkdir(parents=True)
            (ckpt / "config.json").write_text("{}")  # a checkpoint folder without a run config
            labels.append(f"{method}:{seed}:{ckpt}")
            probe_entries.append({"checkpoint": str(ckpt), "path": str(ckpt), "loss": 2.0 + deltas[method][i],
                                  "delta": deltas[method][i]})
            d = drifts[method][i]
            drift_entries.append({"checkpoint": str(ckpt), "path": str(ckpt), "mean": d, "per_layer": [d, d, d],
                                  "thirds": {"early": d, "middle": d, "late": d}})
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"command": "probe", "settings": {"seed": 0}, "base": {"path": "base"},
                                 "finetunes": probe_entries}))
    drift = tmp_path / "drift.json"
    drift.write_text(json.dumps({"command": "drift", "settings": {}, "base": {"path": "base"},
                                 "finetunes": drift_entries}))
    report = run_compare([], labels, [str(probe)], [str(drift)], str(tmp_path / "out"))
    too_small = {"ci95": None, "note": "n too small"}
    assert report["correlations"]["baseline"] == {"pearson_r": pytest.approx(1.0), "n": 3, **too_small}
    assert report["correlations"]["jepa"] == {"pearson_r": pytest.approx(-0.5), "n": 3, **too_small}
    assert "- jepa: Pearson r = -0.500 over 3 runs, no CI (n too small)" in report["markdown"]
    assert report["correlation_tests"] == [{"a": "baseline", "b": "jepa", "z": None, "p": None, "note": "n too small"}]
    rows = {(r["task"], r["metric"]): r for r in report["comparisons"][0]["rows"]}
    row = rows[("(drift)", "mean")]
    assert row["baseline_mean"] == pytest.approx(0.4) and row["baseline_std"] == pytest.approx(math.sqrt(0.08 / 3))
    assert row["delta_mean"] == pytest.approx(-0.2) and row["delta_std"] == pytest.approx(math.sqrt(0.02 / 3))
    assert row["n"] == 3 and row["seeds"] == [42, 123, 777]
    assert report["comparisons"][0]["drift_ratio"]["mean"] == pytest.approx(0.5)
    assert rows[("(probe)", "loss delta to base")]["method_mean"] == pytest.approx(0.02)
    assert report["flags"]["missing_seeds"] == [] and report["flags"]["mismatched_settings"] == []
    assert (tmp_path / "out" / "drift_vs_forgetting.png").stat().st_size > 1024


def _labelled_drift_probe(root: Path, points: dict[str, list[tuple[float, float]]]) -> tuple[list[str], Path, Path]:
    """--run labels and probe / drift files for {method: [(mean drift, probe delta) per seed]}."""
    labels, probe_entries, drift_entries = [], [], []
    for method, pairs in points.items():
        for seed, (d, delta) in enumerate(pairs):
            ckpt = root / f"{method}_{seed}" / "final"
            ckpt.mkdir(parents=True)
            (ckpt / "config.json").write_text("{}")
            labels.append(f"{method}:{seed}:{ckpt}")
            probe_entries.append({"checkpoint": str(ckpt), "path": str(ckpt), "loss": 2.0 + delta, "delta": delta})
            drift_entries.append({"checkpoint": str(ckpt), "path": str(ckpt), "mean": d, "per_layer": [d, d],
                                  "thirds": {"early": d, "middle": d, "late": None}})
    probe, drift = root / "probe.json", root / "drift.json"
    probe.write_text(json.dumps({"command": "probe", "settings": {}, "base": {"path": "b"},
                                 "finetunes": probe_entries}))
    drift.write_text(json.dumps({"command": "drift", "settings": {}, "base": {"path": "b"}, "layers": [1, 2],
                                 "finetunes": drift_entries}))
    return labels, probe, drift


def test_density_landscape_per_method_and_why_a_method_has_none(tmp_path, caplog):
    """Figure 5: a KDE surface for a method with >= 3 runs off one line; none, with the reason logged, for
    fewer than 3 runs, identical points, or points on a line."""
    from matplotlib.image import imread

    points = {"baseline": [(0.30, 0.20), (0.42, 0.26), (0.36, 0.31), (0.50, 0.24)],
              "jepa": [(0.12, 0.05), (0.2, 0.09)],  # 2 runs
              "anchor": [(0.25, 0.1)] * 3,  # identical points
              "jepa+anchor": [(0.1, 0.01), (0.2, 0.02), (0.3, 0.03)]}  # on a line
    labels, probe, drift = _labelled_drift_probe(tmp_path, points)
    with caplog.at_level("WARNING", logger="dllm_jepa_train.analysis.compare"):
        report = run_compare([], labels, [str(probe)], [str(drift)], str(tmp_path / "out"))
    density = report["density_landscape"]
    assert density["methods"] == ["baseline"]
    assert set(density["skipped"]) == {"jepa", "anchor", "jepa+anchor"}
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "no surface for jepa: 2 run(s); a 2-D Gaussian KDE needs at least 3" in logged
    assert "no surface for anchor: singular covariance: all 3 runs have the same drift and forgetting" in logged
    assert "no surface for jepa+anchor: singular covariance: the 3 runs lie on a line" in logged
    assert "density landscape: no surface for jepa: 2 run(s)" in report["markdown"]
    figure = tmp_path / "out" / "drift_forgetting_density.png"
    assert report["plots"]["drift_forgetting_density"] == str(figure) and imread(figure).ndim == 3


def test_missing_and_non_lm_eval_result_files_are_named(tmp_path):
    missing = tmp_path / "nope" / "results.json"
    with pytest.raises(AnalysisError, match=f"results path {missing} does not exist"):
        run_compare([str(missing)], [], [], [], str(tmp_path / "out"))
    empty_dir = tmp_path / "empty_eval"
    empty_dir.mkdir()
    with pytest.raises(AnalysisError, match=f"no lm-eval results files .* under {empty_dir}"):
        run_compare([str(empty_dir)], [], [], [], str(tmp_path / "out"))
    not_lm_eval = tmp_path / "results_other.json"
    not_lm_eval.write_text(json.dumps({"accuracy": 0.5}))
    with pytest.raises(AnalysisError, match=f"results file {not_lm_eval} is not lm-eval output"):
        run_compare([str(not_lm_eval)], [], [], [], str(tmp_path / "out"))
    with pytest.raises(AnalysisError, match="expected METHOD:SEED:PATH"):
        run_compare([], ["jepa:42"], [], [], str(tmp_path / "out"))


def test_wikitext_headers_are_recognised():
    from dllm_jepa_train.analysis.common import is_wikitext_header

    assert is_wikitext_header(" = Robert Boulter = \n") and is_wikitext_header(" = = = Film = = = ")
    assert not is_wikitext_header(" The value of x = 3 and y = 4 .") and not is_wikitext_header(" = ")


# ------------------------------------------------------------------------------ cells, grids, A.1 statistics
def test_fisher_interval_and_r_to_z_test_by_hand():
    from dllm_jepa_train.analysis.stats import STANDARD_NORMAL, Z_95, fisher_ci, r_to_z_test

    low, high = fisher_ci(0.94, 10)  # the paper's A.1 hand check: r = .94, n = 10 -> [.76, .99]
    assert round(low, 2) == 0.76 and round(high, 2) == 0.99
    assert fisher_ci(0.94, 3) is None and fisher_ci(1.0, 10) is None  # n - 3 < 1; z infinite
    assert STANDARD_NORMAL.cdf(Z_95) == pytest.approx(0.975, abs=1e-15)  # the CI's quantile is the 97.5% one
    # atanh(.94) = 1.7380, atanh(.5) = 0.5493, se = sqrt(1/7 + 1/7) = 0.5345 -> z = 2.224, p = 0.026
    test = r_to_z_test(0.94, 10, 0.5, 10)
    assert test["z"] == pytest.approx(2.224, abs=1e-3) and test["p"] == pytest.approx(0.0262, abs=1e-3)
    assert r_to_z_test(0.94, 10, 0.5, 3) is None


def _grid_run(root: Path, name: str, seed: int, lam: float, k: int, t_target: float = 0.7) -> Path:
    """<root>/<name>/final (empty) with a config.yaml resolved from the shipped tiny config."""
    from dllm_jepa_train.config import load_config, save_config

    cfg = load_config(PROJECT_ROOT / "dllm_jepa_train" / "configs" / "tiny_jepa.yaml",
                      ["--run.seed", str(seed), "--jepa.lambda", str(lam), "--jepa.predictor_depth", str(k),
                       "--jepa.t_target", str(t_target), "--run.output_dir", str(root / name)])
    (root / name / "final").mkdir(parents=True)
    save_config(cfg, root / name / "config.yaml")
    return root / name / "final"


def _results_file(path: Path, checkpoint: Path, task: str, value: float, version: float = 1.0) -> Path:
    """A minimal lm-eval results JSON (the fields compare reads) for `checkpoint`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "results": {task: {"alias": task, "exact_match,none": value, "exact_match_stderr,none": 0.01}},
        "configs": {task: {"num_fewshot": 0, "metadata": {"version": version}}},
        "versions": {task: version}, "n-shot": {task: 0},
        "config": {"model_args": f"pretrained={checkpoint}", "limit": None}, "date": 1.0}))
    return path


def test_compare_prints_a_grid_per_cell_with_best_cell_and_dev_selection(tmp_path):
    from matplotlib.image import imread

    eval_dir, dev_dir = tmp_path / "eval", tmp_path / "dev"
    # Eval scores: (2, 2) is best on the evaluation split; dev scores make (1, 2) best instead.
    scores = {(1.0, 1): 0.40, (1.0, 2): 0.45, (2.0, 1): 0.42, (2.0, 2): 0.50}
    dev = {(1.0, 1): 0.30, (1.0, 2): 0.60, (2.0, 1): 0.35, (2.0, 2): 0.40}
    for seed, shift in ((1, 0.0), (2, 0.02)):
        base = _grid_run(tmp_path / "runs", f"baseline_s{seed}", seed, 0.0, 2)
        _results_file(eval_dir / f"baseline_s{seed}" / "results_1.json", base, "gsm8k_dllm_0shot", 0.30 + shift)
        for (lam, k), value in scores.items():
            final = _grid_run(tmp_path / "runs", f"l{lam}_k{k}_s{seed}", seed, lam, k)
            _results_file(eval_dir / f"l{lam}_k{k}_s{seed}" / "results_1.json", final, "gsm8k_dllm_0shot",
                          value + shift)
            _results_file(dev_dir / f"l{lam}_k{k}_s{seed}" / "results_1.json", final, "gsm8k_dllm_dev", dev[lam, k])
    report = run_compare([str(eval_dir)], [], [], [], str(tmp_path / "out"))
    assert report["swept_keys"]["jepa"] == ["jepa.lambda", "jepa.predictor_depth"]
    assert "optim.grad_accum" in dict(next(iter(report["runs"]))["cell_settings"])
    assert len(report["comparisons"]) == 4  # one per grid position, each against the one baseline
    assert {c["method"] for c in report["comparisons"]} == {f"jepa (λ={lam:g}, k={k})" for lam, k in scores}
    (grid,) = report["grids"]
    assert (grid["rows_key"], grid["cols_key"]) == ("jepa.lambda", "jepa.predictor_depth")
    assert grid["row_values"] == [1.0, 2.0] and grid["col_values"] == [1, 2]
    assert grid["best"] == [2.0, 2] and grid["selection"] == "selected on the evaluation split (optimistic)"
    cell = next(c for c in grid["cells"] if (c["row"], c["col"]) == (2.0, 2))
    assert cell["n"] == 2 and cell["mean"] == pytest.approx(0.51) and cell["std"] == pytest.approx(0.01)
    assert grid["baseline"]["mean"] == pytest.approx(0.31) and grid["baseline"]["n"] == 2
    markdown = report["markdown"]
    assert "## Grid: jepa over λ × k, gsm8k_dllm_0shot exact_match,none" in markdown
    assert "| λ \\ k | 1 | 2 |" in markdown and "baseline: 0.3100 ± 0.0100 (n = 2)" in markdown
    assert "| 2 | 0.4300 ± 0.0100 (2) | **0.5100 ± 0.0100 (2)** |" in markdown
    assert imread(tmp_path / "out" / "grid_1.png").ndim == 3
    on_dev = run_compare([str(eval_dir)], [], [], [], str(tmp_path / "out_dev"), select_on=[str(dev_dir)])
    assert on_dev["grids"][0]["best"] == [1.0, 2] and "dev split" in on_dev["grids"][0]["selection"]
    # A dev set missing one grid position cannot select: it says which one.
    (dev_dir / "l2.0_k2_s1" / "results_1.json").unlink()
    (dev_dir / "l2.0_k2_s2" / "results_1.json").unlink()
    with pytest.raises(AnalysisError, match=r"--select-on: no dev-split exact_match,none for jepa"):
        run_compare([str(eval_dir)], [], [], [], str(tmp_path / "out_dev2"), select_on=[str(dev_dir)])


def test_compare_keeps_cells_apart_and_flags_task_versions(tmp_path):
    eval_dir = tmp_path / "eval"
    base = _grid_run(tmp_path / "runs", "baseline_s1", 1, 0.0, 2)
    _results_file(eval_dir / "b" / "results_1.json", base, "gsm8k_dllm", 0.3)
    jepa = _grid_run(tmp_path / "runs", "jepa_s1", 1, 1.0, 3)
    _results_file(eval_dir / "j" / "results_1.json", jepa, "gsm8k_dllm", 0.4, version=2.0)
    symmetric = _grid_run(tmp_path / "runs", "sym_s1", 1, 1.0, 3, t_target=0.2)
    _results_file(eval_dir / "s" / "results_1.json", symmetric, "gsm8k_dllm", 0.35)
    nopred = _grid_run(tmp_path / "runs", "nopred_s1", 1, 1.0, 0)
    _results_file(eval_dir / "n" / "results_1.json", nopred, "gsm8k_dllm", 0.33)
    report = run_compare([str(eval_dir)], [], [], [], str(tmp_path / "out"))
    labels = [r["label"] for r in report["runs"]]
    assert labels == ["baseline s1", "jepa (t_H=0.2, k=3, symmetric views) s1", "jepa (t_H=0.7, k=0, no predictor) s1",
                      "jepa (t_H=0.7, k=3) s1"]
    assert [r["ablation"] for r in report["runs"]] == ["", "symmetric views", "no predictor", ""]
    assert len(report["comparisons"]) == 3 and report["grids"][0]["rows_key"] == "jepa.t_target"
    assert "gsm8k_dllm: version differs between runs: 1.0 (baseline s1, " in "\n".join(
        report["flags"]["mismatched_settings"])


def test_runs_of_one_global_batch_config_on_different_world_sizes_share_a_cell():
    from dllm_jepa_train.analysis.common import identity_from_config
    from dllm_jepa_train.config import load_config, resolve_batch

    path = PROJECT_ROOT / "dllm_jepa_train" / "configs" / "gsm8k_jepa.yaml"
    on_two, on_eight = (identity_from_config(resolve_batch(load_config(path), n)) for n in (2, 8))
    assert on_two.cell == on_eight.cell and on_two.variant == on_eight.variant
    other_lr = identity_from_config(resolve_batch(load_config(path, ["--optim.lr", "2e-5"]), 8))
    assert other_lr.cell != on_eight.cell
    assert dict(on_eight.variant)["jepa.lambda"] == 2.0 and dict(on_eight.variant)["jepa.predictor_depth"] == 4


def test_run_identity_keeps_exactly_the_options_declared_to_change_what_a_run_learns():
    from dllm_jepa_train.analysis.common import identity_from_config
    from dllm_jepa_train.config import fields_by_key, load_config

    path = PROJECT_ROOT / "dllm_jepa_train" / "configs" / "gsm8k_jepa.yaml"  # jepa + anchor: every setting matters
    found = identity_from_config(load_config(path, ["--optim.global_batch_size", "0", "--anchor.l2_lambda", "1e-4"]))
    kept = set(dict(found.cell)) | set(dict(found.variant))
    declared = {key for key, f, _ in fields_by_key() if f.metadata["cell"] and not key.startswith("tiny.")}
    assert kept == declared  # tiny.* sizes toy models only; this run fine-tunes a real checkpoint
    assert {"run.seed", "run.output_dir", "jepa.collapse_every"}.isdisjoint(kept) and "optim.lr" in kept

def test_pooled_correlations_per_method_with_interval_and_test():
    from dllm_jepa_train.analysis.stats import correlation_report, fisher_ci, r_to_z_test

    drift = [0.1, 0.2, 0.3, 0.4, 0.5]
    forgetting = {"baseline": [0.11, 0.19, 0.32, 0.38, 0.52], "jepa": [0.05, 0.01, 0.04, 0.02, 0.03]}
    points = [(m, seed, x, y) for m, ys in forgetting.items() for seed, (x, y) in enumerate(zip(drift, ys))]
    correlations, tests = correlation_report(points, ["baseline", "jepa"])
    for method, ys in forgetting.items():
        r = pearson(drift, ys)
        assert correlations[method] == {"pearson_r": r, "n": 5, "ci95": fisher_ci(r, 5)}
    (test,) = tests
    expected = r_to_z_test(correlations["baseline"]["pearson_r"], 5, correlations["jepa"]["pearson_r"], 5)
    assert test == {"a": "baseline", "b": "jepa", **expected} and 0.0 < test["p"] < 1.0
    _, perfect = correlation_report([(m, 0, x, 2 * x if m == "a" else -x) for m in "ab" for x in drift], ["a", "b"])
    assert perfect[0]["note"] == "r undefined or ±1"  # n is enough; Fisher's z of r = ±1 is infinite
