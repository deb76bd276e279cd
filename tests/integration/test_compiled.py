"""`compile`: compiled forwards give the eager tokens under the same bucketing; buckets, graph counts, reports.

The compiled-vs-eager checks run one shape each (batch 3 padded to 4, canvas 27 left-padded to 28), fp32
on CPU, with inductor (~10-40 s cold per model on a 2-core machine). Random tiny models predict nearly
the same distribution everywhere: their confidence rankings are ties to ~4e-8 (p(x0) of the LLaDA-like
model) or exact (negative entropy of the Dream-like one) whatever the prompt, far below the compiled
fp32 logit difference (~6e-7 / 2.5e-5), so, as in test_early_exit.py, a fixed per-position logit offset
(`OFFSET`, added to both runs after the forward) makes the rankings well defined. Each check first
measures the eager run's decision margins (top-1 minus top-2 logit of every committed token; confidence
of the last committed position minus the best one left masked) and requires them to be far above the
measured compiled-vs-eager difference, so a tie is reported as such, never mistaken for a bug.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lm_eval_diffusion.backbone import load_backbone
from lm_eval_diffusion.compiled import CompiledLogits, compile_backbone
from lm_eval_diffusion.sampler import DreamSamplerConfig, LladaSamplerConfig, dream_generate, llada_generate

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = ["SELECT count(*) FROM singer", "Question: Tom has 3 apples", "dog"]  # 11, 8 and 2 tiny tokens
GEN_LENGTH = 16
OFFSET = 2.0 * torch.randn((32, 384), generator=torch.Generator().manual_seed(0))  # (positions, >= vocab)


# ---- bucketing around a logits function (the pure bucket functions: tests/unit/test_compiled_buckets.py)
def test_padding_rows_and_length_reaches_the_model_and_is_cut_away():
    seen = []

    def logits_fn(ids, attention_mask):
        seen.append((ids.clone(), None if attention_mask is None else attention_mask.clone()))
        return ids[..., None].float().expand(-1, -1, 2)

    bucketed = CompiledLogits(logits_fn, honours_padding=True, pad_id=0, use_compile=False)
    ids = torch.tensor([[5, 6, 7, 8, 9], [1, 2, 3, 4, 5], [7, 7, 7, 7, 7]])
    mask = torch.tensor([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]])
    out = bucketed(ids, mask)
    assert torch.equal(out[..., 0].long(), ids)  # dummy rows and left padding removed
    padded_ids, padded_mask = seen[-1]
    assert padded_ids.shape == (4, 5) and torch.equal(padded_ids[3], ids[2])  # length 5 is a bucket
    assert torch.equal(padded_mask[:3], mask)
    out = bucketed(ids[:, :1].repeat(1, 9), None)  # length 9 -> 10: one pad column, a mask appears
    padded_ids, padded_mask = seen[-1]
    assert out.shape == (3, 9, 2) and padded_ids.shape == (4, 10)
    assert padded_ids[:, 0].tolist() == [0] * 4 and padded_mask[:, 0].tolist() == [0] * 4
    assert padded_mask[:, 1:].all()
    ignoring = CompiledLogits(logits_fn, honours_padding=False, use_compile=False)
    ignoring(ids[:, :1].repeat(1, 9), None)
    assert seen[-1][0].shape == (4, 9) and seen[-1][1] is None  # only the batch is bucketed
    assert bucketed.graphs == 0 and bucketed.shapes == 2
    with pytest.raises(ValueError, match="honours_padding"):
        CompiledLogits(logits_fn)


def test_ignored_padding_compiles_one_graph_for_every_length_and_counts_graph_breaks():
    def logits_fn(ids, attention_mask):
        return torch.nn.functional.one_hot(ids, 16).float() * 2.0

    compiled = CompiledLogits(logits_fn, honours_padding=False, backend="eager")
    for length in (5, 9, 23):
        for rows in (3, 4):
            assert torch.equal(compiled(torch.arange(rows * length).view(rows, length) % 16, None),
                               logits_fn(torch.arange(rows * length).view(rows, length) % 16, None))
    assert compiled.graphs == 1 and compiled.shapes == 1  # batch 3 -> 4; the sequence dimension is dynamic

    def breaking(ids, attention_mask):
        ids = ids * 1
        torch._dynamo.graph_break()
        return logits_fn(ids, attention_mask)

    from torch._dynamo.utils import counters

    static = CompiledLogits(breaking, honours_padding=True, pad_id=0, backend="eager")
    before = counters["stats"]["unique_graphs"]
    for length in (5, 9, 10):
        static(torch.zeros((2, length), dtype=torch.long), None)
    # Lengths 5 (unpadded) and 10 (9 padded, 10 unpadded): 3 static shapes, each cut in two by the break.
    assert static.shapes == 3 and static.graphs == counters["stats"]["unique_graphs"] - before > 3
    assert f"{static.graphs} graph(s) compiled for 3 forward shape(s)" in static.summary()


def test_shapes_past_the_buckets_raise_instead_of_running_eagerly():
    def logits_fn(ids, attention_mask):
        return ids[..., None].float() * 2.0

    compiled = CompiledLogits(logits_fn, honours_padding=True, pad_id=0, batch_buckets=(2,), length_buckets=(4,),
                              backend="eager")
    assert compiled.shape_bound() == 2  # one batch, one length, padded or not
    compiled(torch.ones((2, 3), dtype=torch.long), None)  # padded to 4
    compiled(torch.ones((2, 5), dtype=torch.long), None)  # beyond every bucket: a shape of its own
    with pytest.raises(torch._dynamo.exc.FailOnRecompileLimitHit):
        compiled(torch.ones((2, 6), dtype=torch.long), None)  # a third graph would pass the bound


# ---- compiled vs eager on the tiny fixtures ----------------------------------------------------------
class Recorder:
    """Wraps a logits_fn, adds OFFSET (by position from the right); keeps each step's canvas and logits."""

    def __init__(self, logits_fn):
        self.logits_fn, self.steps, self.raw = logits_fn, [], []

    def __call__(self, ids, attention_mask):
        raw = self.logits_fn(ids, attention_mask)
        logits = raw + OFFSET[-ids.shape[1]:, : raw.shape[-1]]
        self.raw.append(raw.clone())
        self.steps.append((ids.clone(), logits.float().clone()))
        return logits


def decision_margins(steps, after, start, mask_id, confidence) -> tuple[float, float]:
    """(min top-1 - top-2 logit of a committed token, min confidence gap at the commit boundary).

    `after(i)` is the canvas after step i; every position from `start` on is committable (true of the
    Dream sampler, and of the LLaDA sampler with one block, as here).
    """
    logit_margin = confidence_margin = float("inf")
    for i, (canvas, logits) in enumerate(steps):
        logits = logits.clone()
        logits[..., mask_id] = float("-inf")
        region, new = canvas[:, start:], after(i)[:, start:]
        is_masked = region == mask_id
        committed = is_masked & (new != mask_id)
        if not committed.any():  # Dream commits int(m * (1 - s / t)) tokens, which can be none
            continue
        top2 = logits[:, start:].topk(2, dim=-1).values
        logit_margin = min(logit_margin, float((top2[..., 0] - top2[..., 1])[committed].min()))
        conf = confidence(logits[:, start:])
        for row in range(canvas.shape[0]):
            left = is_masked[row] & ~committed[row]
            if left.any() and committed[row].any():
                gap = conf[row][committed[row]].min() - conf[row][left].max()
                confidence_margin = min(confidence_margin, float(gap))
    return logit_margin, confidence_margin


def p_x0(logits):
    return torch.softmax(logits, dim=-1).max(-1).values


def negative_entropy(logits):
    p = torch.softmax(logits, dim=-1)
    return (p * torch.log(p + 1e-10)).sum(-1)


def left_padded(backbone, prompts):
    rows = [backbone.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    P = max(map(len, rows))
    ids = torch.full((len(rows), P), backbone.spec.pad_id)
    mask = torch.zeros((len(rows), P), dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, P - len(row):], mask[r, P - len(row):] = torch.tensor(row), 1
    return ids, mask


@pytest.mark.parametrize("name", ["llada", "dream"])
def test_compiled_greedy_tokens_equal_eager_with_the_same_bucketing(tiny_checkpoints, name):
    backbone = load_backbone(str(tiny_checkpoints[name]), dtype="float32", device="cpu")
    assert backbone.honours_padding  # precondition: the canvas is length-bucketed too
    ids, mask = left_padded(backbone, PROMPTS)
    # Canvas 27 -> length bucket 28, batch 3 -> 4: both paddings are exercised.
    assert ids.shape == (3, 11) and backbone.spec.vocab_size <= OFFSET.shape[1]
    mask_id = backbone.spec.mask_id
    if name == "llada":
        config = LladaSamplerConfig(steps=8, gen_length=GEN_LENGTH, block_length=GEN_LENGTH)
        run, confidence = (lambda fn: llada_generate(fn, ids, config, mask_id=mask_id, attention_mask=mask)), p_x0
    else:
        config = DreamSamplerConfig(steps=8, gen_length=GEN_LENGTH)
        run, confidence = (lambda fn: dream_generate(fn, ids, config, mask_id=mask_id, attention_mask=mask)), \
            negative_entropy
    eager = Recorder(CompiledLogits(backbone, use_compile=False))
    expected = run(eager)
    compiled_fn = CompiledLogits(backbone)
    compiled = Recorder(compiled_fn)
    tokens = run(compiled)
    assert compiled_fn.graphs == 1 and compiled_fn.shapes == 1
    error = max(float((a - b).abs().max()) for a, b in zip(eager.raw, compiled.raw))
    canvases = [c for c, _ in eager.steps[1:]] + [expected]
    logit_margin, confidence_margin = decision_margins(eager.steps, canvases.__getitem__, ids.shape[1],
                                                       mask_id, confidence)
    # Precondition, not the check: no near-tie that the compiled rounding (error) could flip.
    assert min(logit_margin, confidence_margin) > 100 * error, (name, logit_margin, confidence_margin, error)
    assert torch.equal(tokens, expected)


# ---- reports -----------------------------------------------------------------------------------------
def test_analysis_compile_helper_counts_graphs_and_keeps_the_state_dict(tiny_checkpoints):
    backbone = load_backbone(str(tiny_checkpoints["llada"]), dtype="float32", device="cpu")
    keys = list(backbone.model.state_dict())
    eager = [backbone.forward(torch.arange(3, 3 + n)[None].repeat(2, 1), None, True)[1][-1] for n in (6, 9)]
    graphs = compile_backbone(backbone, backend="eager")
    with torch.no_grad():
        compiled = [backbone.forward(torch.arange(3, 3 + n)[None].repeat(2, 1), None, True)[1][-1] for n in (6, 9)]
    assert list(backbone.model.state_dict()) == keys
    assert graphs() == 1  # every dimension dynamic: both lengths in one graph
    for a, b in zip(eager, compiled):
        assert torch.equal(a, b)  # the "eager" backend runs the same kernels


def test_analysis_compile_switch_reaches_probe_drift_and_collapse(tiny_checkpoints, tmp_path, monkeypatch, caplog):
    from functools import partial

    from dllm_jepa_train.analysis import __main__ as cli
    from dllm_jepa_train.analysis import collapse, common, drift
    from dllm_jepa_train.analysis.probe import ProbeSettings, run_probe
    from lm_eval_diffusion import compiled

    text = tmp_path / "docs.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\nSELECT count(*) FROM singer\ndog\n")
    asked = []

    def load_model(path, dtype, device, use_compile=False):
        asked.append(use_compile)
        raise common.AnalysisError("stop here")

    for command, module in ((["drift", "--base", "b", "--finetunes", "f"], drift),
                            (["collapse", "--checkpoint", str(tmp_path)], collapse)):
        assert cli.build_parser().parse_args(command).compile is False
        with monkeypatch.context() as patch:
            patch.setattr(module, "load_model", load_model)
            patch.setattr(drift, "check_same_tokenizer", lambda *a: None)
            assert cli.main(command + ["--text-file", str(text), "--compile"]) == 2
    assert asked == [True, True]
    monkeypatch.setattr(compiled, "compile_backbone", partial(compiled.compile_backbone, backend="eager"))
    caplog.set_level(logging.INFO, logger="dllm_jepa_train.analysis.common")
    settings = ProbeSettings(num_docs=3, max_length=12, batch_size=2, text_file=str(text), device="cpu")
    eager = run_probe(str(tiny_checkpoints["llada"]), [], settings)
    assert "graph(s) compiled" not in caplog.text
    on = run_probe(str(tiny_checkpoints["llada"]), [], ProbeSettings(**{**settings.__dict__, "compile": True}))
    assert on["base"]["loss"] == pytest.approx(eager["base"]["loss"], rel=1e-6)
    assert on["settings"]["compile"] is True and eager["settings"]["compile"] is False
    # Batches of 2 and 1 rows, lengths 12 and 2: dynamic dimensions, except that size 1 is specialised.
    assert re.findall(r"compile: (\d+) graph\(s\) compiled", caplog.text) == ["2"]


def test_harness_reports_graphs_and_does_not_count_dummy_rows(tiny_checkpoints, monkeypatch, caplog):
    from functools import partial

    from lm_eval_diffusion import harness

    class Request:
        def __init__(self, *args):
            self.args, self.task_name = args, "tiny"

    monkeypatch.setattr(harness, "CompiledLogits", partial(CompiledLogits, backend="eager"))  # inductor: above
    caplog.set_level(logging.INFO, logger="lm_eval_diffusion.harness")
    args = {"pretrained": str(tiny_checkpoints["llada"]), "device": "cpu", "steps": 4, "gen_length": 8,
            "block_length": 8, "batch_size": 4, "early_exit": False, "mc_num": 2}
    requests = [Request(c, {"until": ["\n"]}) for c in PROMPTS]  # 3 rows, padded to 4 in every forward
    lm = harness.DiffusionLM(**args, compile=True)
    assert len(lm.generate_until(requests)) == 3
    info = lm.get_model_info()
    assert info["compile"] is True and info["compiled_graphs"] == lm._compiled.graphs >= 1
    assert info["row_forwards"]["tiny"] == {"requests": 3, "row_forwards": 12, "row_forwards_full_loop": 12}
    assert f"{info['compiled_graphs']} graph(s) compiled" in caplog.text
    lm.loglikelihood([Request("dog", " jumps over")])
    assert lm.get_model_info()["compiled_graphs"] > info["compiled_graphs"]  # the ELBO's shapes are new
    off = harness.DiffusionLM(**args).get_model_info()
    assert off["compile"] is False and off["compiled_graphs"] is None


@pytest.mark.slow
@pytest.mark.subprocess
def test_lm_eval_with_compile_reports_its_graphs(tiny_checkpoints, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "lm_eval", "--model", "llada_diffusion", "--device", "cpu",
           "--model_args", f"pretrained={tiny_checkpoints['llada']},steps=4,gen_length=8,block_length=8,"
                           "batch_size=2,compile=true",
           "--tasks", "tiny_echo", "--include_path", str(PROJECT_ROOT / "tests/assets/tiny_task"),
           "--limit", "4", "--output_path", str(out)]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    assert results["config"]["compile"] is True
    assert results["config"]["compiled_graphs"] >= 1
    assert results["config"]["row_forwards"]  # still reported, dummy rows not counted
    counts = next(iter(results["config"]["row_forwards"].values()))
    assert counts["requests"] == 4 and counts["row_forwards"] <= 4 * 4
