"""A task defined entirely in a temporary folder (its module, its YAML, its data), with no project file
edited, runs through the trainer's data source and through `lm_eval --include_path`.

The registration mechanism under test (docs/extending.md, "Adding a task"): the task's `utils.py` calls
`task_registry.register_task` when imported; lm-eval imports it through the YAML's `!function`, and the
trainer imports the same file by path from `data.task_modules` before validating its config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.subprocess]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

UTILS = '''"""reverse_words: write a list of words backwards (a task from outside the project)."""
from lm_eval_diffusion import prompts, task_data
from lm_eval_diffusion.task_registry import TaskSpec, register_task

TASK = "reverse"


def load(split, root, options):
    folder = task_data.task_folder(TASK, root)
    return task_data.read_jsonl(task_data.require_file(folder / f"{split}.jsonl", TASK))


def process_results(doc, results):
    words = results[0].split()
    return {"exact_match": float(words == doc["reversed"].split()),
            "first_word": float(words[:1] == doc["reversed"].split()[:1])}


register_task(TaskSpec(
    name=TASK, splits=("train", "test"), load=load,
    text=lambda doc: f"Words: {doc['words']}\\nReversed:", target=lambda doc: doc["reversed"],
    eval_tasks=("reverse_words",), download_hint="nothing: write <data_dir>/reverse/{train,test}.jsonl",
    metrics={"process_results": process_results},
))


def load_dataset(**metadata):
    return task_data.lm_eval_dataset(TASK, metadata)


def doc_to_text(doc):
    return prompts.doc_to_text(TASK, doc)


def doc_to_target(doc):
    return prompts.doc_to_target(TASK, doc)
'''

YAML = """task: reverse_words
custom_dataset: !function utils.load_dataset
output_type: generate_until
training_split: train
test_split: test
doc_to_text: !function utils.doc_to_text
doc_to_target: !function utils.doc_to_target
target_delimiter: " "
num_fewshot: 0
process_results: !function utils.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
  - metric: first_word
    aggregation: mean
    higher_is_better: true
generation_kwargs:
  until: []
  do_sample: false
  temperature: 0.0
  max_gen_toks: 8
metadata:
  version: 1.0
"""

WORDS = ["the lazy dog", "quick brown fox", "foo bar baz", "red green blue", "one two three", "apples and pens"]


@pytest.fixture
def outside_task(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(the task's utils.py, its data root), written under tmp_path; the registry is restored afterwards."""
    from lm_eval_diffusion import task_registry

    task_registry.task_names()  # built-ins in, so the snapshot below holds them
    monkeypatch.setattr(task_registry, "_tasks", dict(task_registry._tasks))
    monkeypatch.setattr(task_registry, "_loaded_paths", dict(task_registry._loaded_paths))
    folder = tmp_path / "reverse_task"
    folder.mkdir()
    (folder / "utils.py").write_text(UTILS)
    (folder / "reverse_words.yaml").write_text(YAML)
    data = tmp_path / "data" / "reverse"
    data.mkdir(parents=True)
    rows = [{"words": w, "reversed": " ".join(reversed(w.split()))} for w in WORDS]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[4:]))
    return folder / "utils.py", tmp_path / "data"


def test_outside_task_through_the_trainer_data_source(outside_task, tiny_tokenizer, tmp_path):
    from dllm_jepa_train.build import resolve_inputs
    from dllm_jepa_train.config import ConfigError, load_config
    from dllm_jepa_train.data import load_examples, tokenize_examples
    from dllm_jepa_train.sweep import default_eval_task

    utils, data_dir = outside_task
    args = ["--data.source", "reverse", "--data.data_dir", str(data_dir), "--run.output_dir", str(tmp_path / "run")]
    with pytest.raises(ConfigError, match=r"data\.source: 'reverse' is not allowed; allowed values: gsm8k, spider, "
                                          r"nlrx, django, jsonl, text"):
        load_config(None, args)
    with pytest.raises(ConfigError, match=r"data\.task_modules: task module .*absent\.py: no such file"):
        load_config(None, args + ["--data.task_modules", json.dumps([str(tmp_path / "absent.py")])])

    cfg = load_config(None, args + ["--data.task_modules", json.dumps([str(utils)])])
    assert cfg.data.task_modules == (str(utils),)
    assert default_eval_task("reverse") == "reverse_words"  # the sweep's eval.sh default
    data, resolved_dir, _ = resolve_inputs(cfg, tmp_path / "run", rank=0)
    examples = load_examples(data, tiny_tokenizer, resolved_dir)
    assert [e[:2] for e in examples] == [(f"Words: {w}\nReversed:", " " + " ".join(reversed(w.split())))
                                         for w in WORDS[:4]]
    rows = tokenize_examples(examples, tiny_tokenizer, tiny_tokenizer.eos_token_id, 64).rows
    assert len(rows) == 4 and all(r["response_ids"][-1] == tiny_tokenizer.eos_token_id for r in rows)


@pytest.mark.slow  # about 12 s alone, most of it lm-eval indexing its built-in task YAMLs
def test_outside_task_through_lm_eval_include_path(outside_task, tiny_checkpoints, tmp_path):
    from lm_eval_diffusion import prompts, task_registry

    utils, data_dir = outside_task
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    # This checkout's code first, installed or not (the hook module sits at its root).
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(BIN / "lm_eval"), "--model", "llada_diffusion", "--device", "cpu", "--tasks", "reverse_words",
         "--model_args", f"pretrained={tiny_checkpoints['llada']},steps=4,gen_length=8,block_length=8",
         "--include_path", str(utils.parent), "--metadata", json.dumps({"data_dir": str(data_dir)}),
         "--log_samples", "--output_path", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["versions"]["reverse_words"] == 1.0
    assert set(results["results"]["reverse_words"]) >= {"exact_match,none", "first_word,none"}

    task_registry.load_task_modules([str(utils)])  # the same module, imported by path here
    process_results = task_registry.get_task("reverse").metrics["process_results"]
    rows = [json.loads(line) for line in next(out.rglob("samples_reverse_words_*.jsonl")).read_text().splitlines()]
    assert sorted(row["doc"]["words"] for row in rows) == sorted(WORDS[4:])
    for row in rows:
        assert row["arguments"]["gen_args_0"]["arg_0"] == prompts.training_pair("reverse", row["doc"])[0]
        scores = process_results(row["doc"], [row["resps"][0][0]])
        assert (row["exact_match"], row["first_word"]) == (scores["exact_match"], scores["first_word"])
