"""Config: shipped configs validate and carry the paper recipe; overrides, errors, DeepSpeed JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dllm_jepa_train.config import (
    TASKS,
    ConfigError,
    TrainConfig,
    deepspeed_config,
    load_config,
    save_config,
    to_dict,
)
from dllm_jepa_train.main import main, split_args

CONFIGS = Path(__file__).resolve().parents[1] / "dllm_jepa_train" / "configs"
PAPER = [f"{task}_{kind}" for task in TASKS for kind in ("baseline", "jepa")]
WIDE_T = ["gsm8k_widet_baseline", "gsm8k_widet_jepa", "gsm8k_widet_l2anchor"]


def test_every_paper_and_tiny_config_is_shipped():
    names = {p.stem for p in CONFIGS.glob("*.yaml")}
    assert set(PAPER + WIDE_T + ["tiny_baseline", "tiny_jepa"]) <= names


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_config_validates(name):
    path = CONFIGS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()).get("data", {})
    # Configs whose file source has no path are templates their caller completes (the demo passes
    # --data.path); everything else in them must validate as written.
    overrides = ["--data.path", "completed-by-caller"] if data.get("source") in ("jsonl", "text") and \
        not data.get("path") and not data.get("generate") else []
    load_config(path, overrides)


@pytest.mark.parametrize("name", PAPER + WIDE_T)
def test_paper_configs_carry_the_recipe(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    wide = "widet" in name
    assert (cfg.diffusion.t_context, cfg.jepa.t_target) == ((0.1, 0.9) if wide else (0.2, 0.7))
    assert cfg.optim.lr == (1.4e-6 if wide else 1e-5)
    assert cfg.jepa.lambda_ == (1.0 if name.endswith("_jepa") else 0.0)
    assert cfg.anchor.l2_lambda == (1e-4 if name.endswith("l2anchor") else 0.0)  # the brief's lambda_L2
    assert cfg.optim.betas == (0.9, 0.999) and cfg.optim.weight_decay == 0.01 and cfg.optim.warmup_ratio == 0.05
    assert (cfg.optim.epochs, cfg.optim.micro_batch_size, cfg.optim.grad_accum) == (2, 2, 2)
    assert (cfg.run.engine, cfg.run.zero_stage, cfg.run.precision) == ("deepspeed", 2, "bf16")
    assert cfg.model.gradient_checkpointing and cfg.jepa.ema_decay == 0.996 and 1 <= cfg.jepa.predictor_depth <= 5
    assert cfg.model.pretrained == "GSAI-ML/LLaDA-8B-Base"
    assert cfg.data.source == name.split("_")[0] and cfg.run.output_dir == f"runs/{name}"


def test_task_list_matches_the_task_data_module():
    from lm_eval_diffusion.task_data import TASKS as DATA_TASKS

    assert TASKS == DATA_TASKS


def test_defaults_then_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("jepa:\n  lambda: 2\n  predictor_depth: 3\noptim:\n  lr: 3e-5\n")
    cfg = load_config(path, ["--jepa.lambda", "0.5", "--run.output_dir=/x", "--diffusion.t_context", "[0.1, 0.3]"])
    assert cfg.jepa.lambda_ == 0.5 and cfg.jepa.predictor_depth == 3 and cfg.optim.lr == 3e-5
    assert cfg.run.output_dir == "/x" and cfg.diffusion.t_context == [0.1, 0.3]
    assert cfg.optim.epochs == TrainConfig().optim.epochs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--jepa.lamda", "1"], r"unknown config key jepa\.'lamda'; allowed keys: jepa\.lambda, jepa\.t_target"),
        (["--optimizer.lr", "1"], r"unknown config section 'optimizer'; allowed sections: model, tiny, data"),
        (["--run.engine", "jax"], r"run\.engine: 'jax' is not allowed; allowed values: deepspeed, torch"),
        (["--diffusion.loss_norm", "sum"], r"allowed values: masked_mean, llada"),
        (["--run.zero_stage", "3"], r"run\.zero_stage: 3 is not allowed; allowed values: 0, 1, 2"),
        (["--optim.lr", "fast"], r"optim\.lr: expected a number, got 'fast'"),
        (["--jepa.t_target", "[0.9, 0.2]"], r"jepa\.t_target: mask rates must satisfy 0 < lo <= hi <= 1"),
        (["--jepa.lambda", "-1"], r"jepa\.lambda: must be >= 0"),
        (["--data.source", "jsonl"], r"data\.path: required when data\.source is jsonl"),
        (["--model.gradient_checkpointing", "maybe"], r"expected true or false"),
        (["--jepa"], r"must look like --section\.key"),
    ],
)
def test_bad_config_names_the_key_and_the_allowed_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_key_fails_before_any_model_loads(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"config error: unknown config key jepa\.'lamda'"):
        main(["--config", str(CONFIGS / "tiny_jepa.yaml"), "--model.pretrained", str(tmp_path / "missing"),
              "--run.output_dir", str(out), "--jepa.lamda", "1"])
    assert not out.exists()


def test_launcher_local_rank_argument_is_dropped():
    assert split_args(["--local_rank=0", "--config", "a.yaml", "--jepa.lambda", "1"]) == ("a.yaml", ["--jepa.lambda", "1"])
    assert split_args(["--local_rank", "3", "--config=b.yaml"]) == ("b.yaml", [])


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS / "gsm8k_jepa.yaml", ["--jepa.lambda", "0.5", "--diffusion.t_context", "[0.1, 0.3]"])
    save_config(cfg, tmp_path / "config.yaml")
    assert to_dict(load_config(tmp_path / "config.yaml")) == to_dict(cfg)


def test_deepspeed_json_comes_from_the_one_config():
    cfg = load_config(CONFIGS / "gsm8k_jepa.yaml", ["--optim.grad_clip", "0.5", "--run.zero_stage", "1"])
    ds = deepspeed_config(cfg)
    assert ds["train_micro_batch_size_per_gpu"] == 2 and ds["gradient_accumulation_steps"] == 2
    assert ds["gradient_clipping"] == 0.5 and ds["bf16"] == {"enabled": True}
    assert ds["zero_optimization"]["stage"] == 1
    assert "optimizer" not in ds and "train_batch_size" not in ds


def test_user_deepspeed_json_overrides_but_cannot_contradict_the_batch(tmp_path):
    user = tmp_path / "ds.json"
    user.write_text(json.dumps({"zero_optimization": {"overlap_comm": False}, "optimizer": {"type": "FusedAdam"}}))
    ds = deepspeed_config(load_config(None, ["--run.deepspeed_config", str(user)]))
    assert ds["zero_optimization"] == {"stage": 2, "overlap_comm": False, "contiguous_gradients": True}
    assert ds["optimizer"] == {"type": "FusedAdam"}
    user.write_text(json.dumps({"gradient_accumulation_steps": 8}))
    with pytest.raises(ConfigError, match="gradient_accumulation_steps=8 but optim.grad_accum=2"):
        deepspeed_config(load_config(None, ["--run.deepspeed_config", str(user)]))
