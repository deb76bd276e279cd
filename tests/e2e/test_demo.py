"""The README's first command at CI size: the whole pipeline through the real deepspeed and lm_eval
commands, then a rerun that reuses every stage, and a failing stage that names itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dllm_jepa_train.toy import demo

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("demo")
    proc = subprocess.run([sys.executable, "-m", "dllm_jepa_train.toy.demo", "--size", "small", "--root", str(root)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=1200)
    return root, proc


TASKS = ("gsm8k_dllm_demo", "spider_exec_demo", "nlrx_synth_demo", "django_code_demo")
STAGE_NAMES = [name for name, _ in demo.stages_for(demo.seeds_of(1))]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(1500)  # the fixture runs the whole small demo (its own limit: 1,200 s)
def test_small_demo_runs_every_stage_and_prints_the_summary(small_demo):
    root, proc = small_demo
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    state = json.loads((root / "stages.json").read_text())
    assert list(state["done"]) == STAGE_NAMES
    for name in ("base", "baseline_s42", "jepa_s42"):
        assert (root / name / "final" / "model.safetensors").exists()
        results = list((root / "eval" / name).rglob("results_*.json"))
        assert len(results) == 1, results
        data = json.loads(results[0].read_text())
        assert set(TASKS) <= set(data["results"])
        assert 0.0 <= data["results"]["spider_exec_demo"]["exec_match,none"] <= 1.0
        # The demo protocol: zero-shot, and raw generations (no stop strings) outside GSM8K.
        assert all(data["configs"][t]["num_fewshot"] == 0 for t in TASKS)
        assert data["configs"]["nlrx_synth_demo"]["generation_kwargs"]["until"] == []
    # The JEPA run trained a predictor and an EMA target; the baseline built neither.
    for name in ("predictor.safetensors", "ema.safetensors"):
        assert (root / "jepa_s42" / "final" / "jepa" / name).stat().st_size > 0
        assert not (root / "baseline_s42" / "final" / "jepa" / name).exists()
    assert json.loads((root / "baseline_s42" / "final" / "jepa" / "config.json").read_text())["lambda"] == 0.0
    probe = json.loads((root / "analysis" / "probe.json").read_text())
    assert len(probe["finetunes"]) == 2 and all(f["loss"] > 0 for f in probe["finetunes"])
    table = (root / "compare" / "compare.md").read_text()
    summary = (root / "summary.md").read_text()
    for task in TASKS:
        assert task in table and task in summary and task in proc.stdout
    assert "What this shows:" in proc.stdout and "zero-shot" in proc.stdout
    for png in ("drift_curves.png", "drift_vs_forgetting.png"):
        assert (root / "compare" / png).stat().st_size > 1000
    assert "Stage times (seconds):" in proc.stdout and "total" in proc.stdout


@pytest.mark.slow
@pytest.mark.subprocess
def test_rerun_reuses_finished_stages(small_demo):
    root, first = small_demo
    assert first.returncode == 0
    proc = subprocess.run([sys.executable, "-m", "dllm_jepa_train.toy.demo", "--size", "small", "--root", str(root)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("reused") == len(STAGE_NAMES)


def test_failing_stage_names_itself_and_keeps_earlier_stages(tmp_path, monkeypatch, capsys):
    def broken(root, size, env):
        raise ValueError("synthetic failure")

    stages = [("data", lambda root, size, env: None), ("pretrain", broken)]
    monkeypatch.setattr(demo, "stages_for", lambda seeds, lora=False: stages)
    assert demo.main(["--size", "small", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "stage 'pretrain' failed: ValueError: synthetic failure" in err
    assert list(json.loads((tmp_path / "stages.json").read_text())["done"]) == ["data"]


def test_seeds_name_one_stage_per_fine_tune_and_rerun_the_cross_seed_stages():
    assert demo.seeds_of(1) == [42] and demo.seeds_of(4) == [42, 123, 777, 1000]
    with pytest.raises(demo.StageError, match="--seeds"):
        demo.seeds_of(0)
    one, two = ([n for n, _ in demo.stages_for(demo.seeds_of(k))] for k in (1, 2))
    assert [n for n in two if n.startswith(("baseline", "jepa", "eval_"))] == [
        "baseline_s42", "jepa_s42", "baseline_s123", "jepa_s123",
        "eval_base", "eval_baseline_s42", "eval_jepa_s42", "eval_baseline_s123", "eval_jepa_s123"]
    # Stages that read every seed's runs are new when seeds are added; the per-run ones are reused.
    assert set(one) - set(two) == {"probe_1seeds", "compare_1seeds", "summary_1seeds"}


def test_demo_configs_validate_and_the_methods_differ_only_in_lambda():
    from dllm_jepa_train.config import load_config

    overrides = ["--data.path", "completed-by-the-demo"]
    pretrain = load_config(demo.CONFIGS / "demo_pretrain.yaml", overrides)
    baseline = load_config(demo.CONFIGS / "demo_baseline.yaml", overrides)
    jepa = load_config(demo.CONFIGS / "demo_jepa.yaml", overrides)
    assert pretrain.data.source == "text" and baseline.data.source == "jsonl"
    assert (baseline.jepa.lambda_, jepa.jepa.lambda_) == (0.0, 1.0)
    jepa.jepa.lambda_ = baseline.jepa.lambda_
    jepa.run.output_dir = baseline.run.output_dir
    assert jepa == baseline
    # Context masking over the whole range: evaluation starts from a fully masked answer canvas.
    assert tuple(baseline.diffusion.t_context) == (0.05, 1.0)


def test_zero_seeds_are_refused_before_anything_runs(tmp_path, capsys):
    assert demo.main(["--size", "small", "--seeds", "0", "--root", str(tmp_path / "new")]) == 1
    assert "--seeds must be >= 1" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_failing_command_points_at_its_log(tmp_path):
    with pytest.raises(demo.StageError, match=r"stage 'eval_base' failed: .* exited with 3; full log: .*x\.log"):
        demo.run_logged([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"],
                        tmp_path / "x.log", {}, "eval_base")
    assert "boom" in (tmp_path / "x.log").read_text()


def test_size_mismatch_with_an_existing_root_is_refused(tmp_path):
    (tmp_path / "stages.json").write_text(json.dumps({"size": "default", "done": {}}))
    with pytest.raises(demo.StageError, match="holds a 'default' demo"):
        demo.run_demo(tmp_path, "small")


def test_training_canvas_is_the_evaluation_canvas(tiny_tokenizer):
    import yaml

    demo_tasks = PROJECT_ROOT / "tasks" / "demo"
    yaml_names = {"gsm8k": "gsm8k_dllm_demo", "spider": "spider_exec_demo", "nlrx": "nlrx_synth_demo",
                  "django": "django_code_demo"}
    defaults = demo.toy_task_defaults()  # what the toy plug-in attached to the task registry
    assert set(defaults) == set(yaml_names)
    for task, name in yaml_names.items():
        spec = yaml.safe_load((demo_tasks / f"{name}.yaml").read_text())
        assert spec["generation_kwargs"]["max_gen_toks"] == defaults[task].canvas, task
        assert defaults[task].canvas % demo.BLOCK_LENGTH == 0, task  # whole blocks: no rounding up
    filled = demo.canvas_response(" baz = foo ( bar )", tiny_tokenizer, 16)
    ids = tiny_tokenizer(filled, add_special_tokens=False)["input_ids"]
    answer = tiny_tokenizer(" baz = foo ( bar )", add_special_tokens=False)["input_ids"]
    # The answer's own tokens, then EOS; with the EOS the trainer appends, exactly the canvas.
    assert ids[:len(answer)] == answer and set(ids[len(answer):]) == {tiny_tokenizer.eos_token_id}
    assert len(ids) + 1 == 16
    assert demo.canvas_response(" baz = foo ( bar )", tiny_tokenizer, len(answer)) is None


def test_mixture_reads_each_tasks_rows_the_given_number_of_times():
    rows = ["a", "b", "c", "d"]
    assert demo.mixture_rows(rows, 1.0) == rows
    assert demo.mixture_rows(rows, 3.0) == rows * 3
    assert demo.mixture_rows(rows, 0.5) == ["a", "b"]
    assert demo.mixture_rows(rows, 1.5) == rows + ["a", "b"]
    assert demo.mixture_rows([], 3.0) == []
    with pytest.raises(ValueError, match="passes must be > 0"):
        demo.mixture_rows(rows, 0)
    passes = {task: facts.mixture_passes for task, facts in demo.toy_task_defaults().items()}
    assert passes == {"gsm8k": 1.0, "spider": 0.4, "nlrx": 0.5, "django": 3.5}


def test_mixture_description_counts_the_rows_per_task(tmp_path):
    path = tmp_path / "finetune.jsonl"
    rows = [{"task": "gsm8k"}] * 2 + [{"task": "django"}] * 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert demo.mixture_description(path) == "5 rows (gsm8k 2, django 3)"
