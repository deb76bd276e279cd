"""Early exit on tiny checkpoints trained (a few seconds each) to answer GSM8K-shaped questions and end:
the returned texts equal the full loop's, in process and through the `lm_eval` command, and fewer
row-forwards are spent. The model and data come from benchmarks/bench_generate.py (`train_answerer`),
so the benchmark's checkpoint is exercised here too.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch
from test_lm_eval_cli import BIN, TASKS, installed, read_outputs, run  # noqa: F401 (installed: a fixture)

from lm_eval_diffusion.harness import DiffusionLM

ROOT = Path(__file__).resolve().parents[2]
GEN = 64


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "bench_generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return load_bench()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bench) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("answerers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a busy 2-core machine train several times slower
    try:
        return {family: bench.train_answerer(root / family, seconds=float("inf"), gen_length=GEN, family=family,
                                             max_steps=400) for family in ("llada", "dream")}
    finally:
        torch.set_num_threads(threads)


class Request:
    def __init__(self, context, gen_kwargs):
        self.args = (context, gen_kwargs)
        self.task_name = "arith"


@pytest.mark.parametrize("family,until,model_args", [
    ("llada", ["Question:"], {"steps": 16, "block_length": 8}),
    # Guidance pushes this model away from EOS (its unconditional pass predicts EOS too), so its rows
    # end by the `until` check on the blank lines it writes instead.
    ("llada", ["\n\n"], {"steps": 16, "block_length": 8, "cfg_scale": 0.5}),
    # This Dream model commits its EOS tail first and its answer last (entropy ranks the tail surest),
    # so its rows are decided only at the last steps: identity is checked, savings are not expected.
    ("dream", ["Question:"], {"steps": 16}),
])
def test_trained_model_texts_equal_without_early_exit(bench, trained, family, until, model_args):
    rng = random.Random(5)
    workload = [bench.arithmetic_question(rng) for _ in range(5)]
    # Prompts of different lengths (left padding at batch 5), pad = EOS in this tokenizer.
    questions = [q if i % 2 else q.replace("Question: ", "Question: Now, ") for i, (q, _, _) in enumerate(workload)]
    runs = {}
    for early_exit in (False, True):
        for batch_size in (1, 5):
            lm = DiffusionLM(pretrained=str(trained[family]), device="cpu", batch_size=batch_size,
                             gen_length=GEN, early_exit=early_exit, **model_args)
            assert lm.backbone.spec.pad_id == lm.backbone.spec.eos_id
            texts = lm.generate_until([Request(q, {"until": until}) for q in questions])
            runs[early_exit, batch_size] = (texts, lm.get_model_info()["row_forwards"]["arith"])
    reference = runs[False, 1][0]
    assert all(texts == reference for texts, _ in runs.values())
    assert any(text.strip() for text in reference)  # the model answers something
    for batch_size in (1, 5):
        full, saved = runs[False, batch_size][1], runs[True, batch_size][1]
        assert full["row_forwards"] == full["row_forwards_full_loop"]
        assert saved["row_forwards"] <= full["row_forwards"]
        if family == "llada":
            assert saved["row_forwards"] < full["row_forwards"]  # answers end before the canvas does



@pytest.mark.slow
@pytest.mark.subprocess
def test_lm_eval_command_same_samples_with_and_without_early_exit(installed, trained, tmp_path):
    """The plain `lm_eval --model llada_diffusion` command: identical --log_samples outputs with early exit
    on and off; the results JSON records the settings and the row-forwards, and threshold mode finishes."""
    base = f"pretrained={trained['llada']},steps=16,block_length=8"
    runs = {"off": f"{base},early_exit=false", "on": f"{base},early_exit=true", "threshold": f"{base},threshold=0.9"}
    common = ["--device", "cpu", "--tasks", "tiny_arith", "--include_path", str(TASKS), "--batch_size", "4",
              "--log_samples"]
    run(*[[str(BIN / "lm_eval"), "--model", "llada_diffusion", "--model_args", args, *common,
           "--output_path", str(tmp_path / name)] for name, args in runs.items()], cwd=tmp_path)
    samples = {name: read_outputs(tmp_path / name)[1]["tiny_arith"] for name in runs}
    configs = {name: json.loads(next((tmp_path / name).rglob("results_*.json")).read_text())["config"]
               for name in runs}
    assert sorted(samples["on"]) == list(range(6))
    assert samples["on"] == samples["off"]
    assert all(isinstance(r, str) for resps in samples["threshold"].values() for r in resps)
    assert (configs["off"]["early_exit"], configs["on"]["early_exit"]) == (False, True)
    off, on = configs["off"]["row_forwards"]["tiny_arith"], configs["on"]["row_forwards"]["tiny_arith"]
    assert off["requests"] == on["requests"] == 6
    assert on["row_forwards"] < off["row_forwards"] == off["row_forwards_full_loop"] == 6 * 16
    threshold = configs["threshold"]
    assert threshold["threshold"] == 0.9 and "not the paper's protocol" in threshold["decoding"]
    assert threshold["row_forwards"]["tiny_arith"]["requests"] == 6

