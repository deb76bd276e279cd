"""Toy names as the trainer's ordinary inputs: `toy:<family>` and `toy:<task>` resolve to folders once."""

from __future__ import annotations

import pytest
import torch

from dllm_jepa_train.config import load_config
from dllm_jepa_train.toy.inputs import prepare_data, prepare_model
from dllm_jepa_train.build import build_trainer


def test_prepare_data_writes_once_and_names_the_task(tmp_path):
    task, data_dir = prepare_data("toy:nlrx", tmp_path / "data", seed=0, scale=0.05)
    assert (task, data_dir) == ("nlrx", tmp_path / "data")
    marker = data_dir / "README.md"
    before = marker.stat().st_mtime_ns
    prepare_data("toy:nlrx", data_dir, seed=0, scale=0.05)  # a rerun or resume reuses the folder
    assert marker.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="allowed toy sources are toy:gsm8k"):
        prepare_data("toy:wiki", tmp_path / "other", seed=0, scale=0.05)


def test_prepare_model_builds_a_loadable_checkpoint_of_the_named_family(tmp_path):
    from lm_eval_diffusion.backbone import load_backbone

    out = prepare_model("toy:dream", tmp_path / "base", ["a b c", "SELECT 1"], hidden_size=32, num_layers=1,
                        num_heads=2, vocab_size=320, seed=0)
    bb = load_backbone(str(out), probe_padding=False)
    assert bb.spec.family == "dream" and bb.spec.shift_logits
    with pytest.raises(ValueError, match="allowed toy models are toy:llada"):
        prepare_model("toy:gpt", tmp_path / "x", [], hidden_size=32, num_layers=1, num_heads=2, vocab_size=320, seed=0)


def test_trainer_resolves_toy_names_and_records_them_in_its_config(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(None, ["--model.pretrained", "toy:llada", "--data.source", "toy:gsm8k",
                             "--data.generate_scale", "0.05", "--data.max_length", "64", "--data.max_rows", "8",
                             "--tiny.hidden_size", "32", "--tiny.num_layers", "1", "--tiny.num_heads", "2",
                             "--tiny.vocab_size", "320", "--run.engine", "torch", "--run.precision", "fp32",
                             "--run.output_dir", str(tmp_path / "run"), "--optim.max_steps", "1",
                             "--optim.micro_batch_size", "2", "--optim.grad_accum", "1", "--jepa.lambda", "1",
                             "--model.gradient_checkpointing", "false"])
    tr = build_trainer(cfg)
    assert (tmp_path / "run" / "data" / "gsm8k" / "train.jsonl").is_file()
    assert (tmp_path / "run" / "base" / "config.json").is_file()
    assert tr.source == str(tmp_path / "run" / "base")
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "toy:llada" in saved and "toy:gsm8k" in saved  # the run's identity keeps the toy names
    final = tr.train()
    assert (final / "config.json").is_file()
