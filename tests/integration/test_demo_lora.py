"""`demo --lora` (issue 22): what its fine-tune stages ask the trainer for, and one kind of demo per root."""

from __future__ import annotations

import json

import pytest

from dllm_jepa_train.config import parse_args, to_dict, validate
from dllm_jepa_train.toy import demo


def _stage_config(monkeypatch, root, method: str, lora: bool):
    """The trainer config a fine-tune stage launches (its command captured instead of run)."""
    commands = []
    monkeypatch.setattr(demo, "run_logged", lambda cmd, *args: commands.append(cmd))
    stage = dict(demo.stages_for([42], lora))[demo.run_name(method, 42)]
    stage(root, demo.SIZES["small"], {})
    cmd = commands[0]
    args = cmd[cmd.index(str(demo.PACKAGE_DIR / "main.py")) + 1:]
    cfg = parse_args(args)[0]
    validate(cfg)
    return cfg


def test_lora_stages_train_adapters_and_the_methods_still_differ_only_in_lambda(monkeypatch, tmp_path):
    configs = {(m, lora): to_dict(_stage_config(monkeypatch, tmp_path, m, lora))
               for m in demo.METHODS for lora in (False, True)}
    for method in demo.METHODS:
        assert configs[method, True]["lora"]["enabled"] is True and configs[method, False]["lora"]["enabled"] is False
        lora_off = {**configs[method, True], "lora": configs[method, False]["lora"]}
        assert lora_off == configs[method, False]  # --lora changes the lora section only
    baseline, jepa = configs["baseline", True], configs["jepa", True]
    differ = {f"{s}.{k}" for s in baseline for k in baseline[s] if baseline[s][k] != jepa[s][k]}
    assert differ <= {"jepa.lambda", "run.output_dir", "jepa.collapse_every"}, differ
    assert "jepa.lambda" in differ


def test_a_root_holds_one_kind_of_demo(tmp_path):
    (tmp_path / "stages.json").write_text(json.dumps({"size": "small", "lora": False, "done": {}}))
    with pytest.raises(demo.StageError, match="holds a full fine-tuning demo; rerun without --lora"):
        demo.run_demo(tmp_path, "small", lora=True)
    assert demo.main(["--size", "small", "--lora", "--root", str(tmp_path)]) == 1
