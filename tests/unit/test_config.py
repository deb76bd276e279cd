"""Config: shipped configs validate and carry the paper recipe; overrides, errors, DeepSpeed JSON."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from dllm_jepa_train.engines import deepspeed_config
from dllm_jepa_train.config import (
    ConfigError,
    TrainConfig,
    load_config,
    parse_args,
    resolve_batch,
    save_config,
    to_dict,
)
from dllm_jepa_train import config as config_module
from dllm_jepa_train.main import main
from lm_eval_diffusion import task_registry

TASKS = task_registry.task_names(training_only=True)

CONFIGS = Path(__file__).resolve().parents[2] / "dllm_jepa_train" / "configs"
TOY_CONFIGS = CONFIGS.parent / "toy" / "configs"  # the demo's stages
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
        not data.get("path") else []
    load_config(path, overrides)


# (lambda, k) each paper JEPA config carries, and the table it follows (see each file's comment).
OPERATING_POINTS = {"gsm8k_jepa": (2.0, 4), "nlrx_jepa": (1.0, 3), "spider_jepa": (1.0, 3), "django_jepa": (1.0, 3),
                    "gsm8k_widet_jepa": (1.0, 3), "gsm8k_ablate_nopredictor": (2.0, 0),
                    "gsm8k_ablate_symmetric": (2.0, 4)}
ABLATIONS = ["gsm8k_ablate_nopredictor", "gsm8k_ablate_symmetric", "gsm8k_baseline_tuniform"]
# What each JEPA config's header says the paper does not publish (the config substitutes its own point).
UNPUBLISHED = {
    "gsm8k_jepa": ["Table 2's own (lambda, k)", "Table 9", "Figure 3"],
    "spider_jepa": ["Table 2's own (lambda, k)"],
    "django_jepa": ["Table 2's own (lambda, k)", "Table 5"],
    "gsm8k_widet_jepa": ["Tables 3, 4, 10, 12 and 13"],
    "gsm8k_ablate_nopredictor": ["Figure 3's (lambda, k)"],
    "gsm8k_ablate_symmetric": ["Figure 3's (lambda, k)"],
    "gsm8k_widet_l2anchor": ["lambda_L2 ||theta - theta_base||^2", "we inject lambda_L2 (theta - theta_base)"],
}


@pytest.mark.parametrize("name", PAPER + WIDE_T + ABLATIONS)
def test_paper_configs_carry_the_recipe(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    wide = "widet" in name
    t_context = {"gsm8k_baseline_tuniform": (0.0, 1.0)}.get(name, (0.1, 0.1) if wide else (0.2, 0.2))
    t_target = {"gsm8k_ablate_symmetric": (0.2, 0.2)}.get(name, (0.9, 0.9) if wide else (0.7, 0.7))
    assert (cfg.diffusion.t_context, cfg.jepa.t_target) == (t_context, t_target)  # (lo, hi), read once
    assert cfg.optim.lr == (1.4e-6 if wide else 1e-5)
    assert (cfg.jepa.lambda_, cfg.jepa.predictor_depth)[: 2 if name in OPERATING_POINTS else 1] == \
        OPERATING_POINTS.get(name, (0.0,))
    assert cfg.anchor.l2_lambda == (1e-4 if name.endswith("l2anchor") else 0.0)  # the brief's lambda_L2
    assert cfg.diffusion.loss_norm == "row_mean"  # eq. 2's per-sequence mean
    assert cfg.optim.betas == (0.9, 0.999) and cfg.optim.weight_decay == 0.01 and cfg.optim.warmup_ratio == 0.05
    assert (cfg.optim.epochs, cfg.optim.micro_batch_size, cfg.optim.global_batch_size) == (2, 2, 32)
    assert resolve_batch(cfg, 8).optim.grad_accum == 2  # the paper's 8 GPUs x 2 x 2
    assert (cfg.run.engine, cfg.run.zero_stage, cfg.run.precision) == ("deepspeed", 2, "bf16")
    assert cfg.model.gradient_checkpointing and cfg.jepa.ema_decay == 0.996 and 0 <= cfg.jepa.predictor_depth <= 5
    assert cfg.model.pretrained == "GSAI-ML/LLaDA-8B-Base"
    assert cfg.data.source == name.split("_")[0] and cfg.run.output_dir == f"runs/{name}"
    text = (CONFIGS / f"{name}.yaml").read_text()
    header = " ".join(line.lstrip("#").strip() for line in text[: text.index("\nmodel:")].splitlines())
    assert "Base or Instruct" in header and "clipping" in header and "1-D parameters" in header  # our choices
    for fact in UNPUBLISHED.get(name, ()):
        assert fact in header and "not published" in header.lower(), fact
    assert {"gsm8k_jepa": "Table 7", "nlrx_jepa": "Table 11", "spider_jepa": "single-config value",
            "django_jepa": "single-config value", "gsm8k_widet_jepa": "Table 8"}.get(name, "") in text


def test_tiny_and_demo_configs_keep_their_own_batch_and_the_token_mean():
    for name in ("tiny_jepa", "tiny_baseline"):
        cfg = load_config(CONFIGS / f"{name}.yaml")
        assert cfg.optim.global_batch_size == 0 and cfg.diffusion.loss_norm == "masked_mean"
    for name in ("demo_jepa", "demo_baseline", "demo_pretrain"):  # the demo completes data.path
        cfg = load_config(TOY_CONFIGS / f"{name}.yaml", ["--data.path", "x"])
        assert cfg.optim.global_batch_size == 0 and cfg.diffusion.loss_norm == "masked_mean"
    assert TrainConfig().diffusion.loss_norm == "row_mean"  # eq. 2 is the default


def test_dream_override_set_switches_only_the_backbone():
    plain = to_dict(load_config(CONFIGS / "gsm8k_jepa.yaml"))
    dream = to_dict(load_config([CONFIGS / "gsm8k_jepa.yaml", CONFIGS / "dream7b.yaml"]))
    assert dream["model"]["pretrained"] == "Dream-org/Dream-v0-Base-7B" and dream["model"]["family"] == "dream"
    assert {k: v for k, v in dream.items() if k != "model"} == {k: v for k, v in plain.items() if k != "model"}


def test_data_sources_are_the_registered_training_tasks():
    from lm_eval_diffusion.task_data import TASKS as DATA_TASKS

    assert TASKS == DATA_TASKS == ("gsm8k", "spider", "nlrx", "django")  # mmlu is not a training source
    assert config_module.data_sources() == TASKS + ("jsonl", "text")
    with pytest.raises(ConfigError, match=r"data\.source: 'mmlu' is not allowed; allowed values: gsm8k, spider, "
                                          r"nlrx, django, jsonl, text, or a plug-in name"):
        load_config(None, ["--data.source", "mmlu"])


def test_defaults_then_yaml_then_command_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("jepa:\n  lambda: 2\n  predictor_depth: 3\noptim:\n  lr: 3e-5\n")
    cfg = load_config(path, ["--jepa.lambda", "0.5", "--run.output_dir=/x", "--diffusion.t_context", "[0.1, 0.3]"])
    assert cfg.jepa.lambda_ == 0.5 and cfg.jepa.predictor_depth == 3 and cfg.optim.lr == 3e-5
    assert cfg.run.output_dir == "/x" and cfg.diffusion.t_context == (0.1, 0.3)
    assert cfg.optim.epochs == TrainConfig().optim.epochs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["--jepa.lamda", "1"], r"unknown config key jepa\.'lamda'; allowed keys: jepa\.lambda, jepa\.t_target"),
        (["--optimizer.lr", "1"], r"unknown config section 'optimizer'; allowed sections: model, tiny, data"),
        (["--run.engine", "jax"], r"run\.engine: 'jax' is not allowed; allowed values: deepspeed, torch"),
        (["--diffusion.loss_norm", "sum"], r"allowed values: row_mean, masked_mean, llada"),
        (["--run.zero_stage", "3"], r"run\.zero_stage: 3 is not allowed; allowed values: 0, 1, 2"),
        (["--optim.lr", "fast"], r"optim\.lr: expected a number, got 'fast'"),
        (["--jepa.t_target", "[0.9, 0.2]"], r"jepa\.t_target: mask rates must satisfy 0 < t <= 1, or 0 <= lo < hi"),
        (["--diffusion.t_context", "0"], r"diffusion\.t_context: mask rates must satisfy 0 < t <= 1"),
        (["--diffusion.t_context", "[0, 0]"], r"diffusion\.t_context: mask rates must satisfy"),
        (["--jepa.predictor_depth", "-1"], r"jepa\.predictor_depth: must be >= 0"),
        (["--optim.global_batch_size", "33"], r"optim\.global_batch_size \(33\) must be a multiple of optim\.micro"),
        (["--jepa.lambda", "-1"], r"jepa\.lambda: must be >= 0"),
        (["--data.source", "jsonl"], r"data\.path: required when data\.source is jsonl"),
        (["--model.gradient_checkpointing", "maybe"], r"expected true or false"),
        (["--jepa"], r"must look like --section\.key"),
        (["lambda=1"], r"argument 'lambda=1': overrides must look like --section\.key value"),
        (["--jepa.lambda"], r"jepa\.lambda: expected one argument"),
        (["--tiny.vocab_size", "256"], r"tiny\.vocab_size: must be >= 300, got 256"),
        (["--data.split", "dev"], r"data\.split: 'dev' is not allowed; allowed values: train, test, validation"),
        (["--jepa.t_target", "[0.1, 0.5, 0.9]"], r"jepa\.t_target: expected a number or \[lo, hi\]"),
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


def test_launcher_local_rank_is_dropped_and_overrides_win_over_every_file_wherever_they_stand(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("jepa:\n  lambda: 2\n  predictor_depth: 3\n")
    second.write_text("jepa:\n  lambda: 3\n")
    cfg, args = parse_args(["--local_rank=0", "--jepa.lambda", "1", "--config", str(first), "--config", str(second)])
    assert (cfg.jepa.lambda_, cfg.jepa.predictor_depth, args.dry_run) == (1.0, 3, False)
    cfg, args = parse_args(["--local_rank", "3", f"--config={first}", "--dry-run", "--config", str(second)])
    assert (cfg.jepa.lambda_, cfg.jepa.predictor_depth, args.dry_run) == (3.0, 3, True)  # the later file wins


def test_config_file_errors_name_the_file_and_the_allowed_keys(tmp_path):
    for text, message in (("optim:\n  lr: [1\n", "cannot be read"), ("- 1\n", "expected a mapping of sections"),
                          ("", "expected a mapping of sections"), ("optim: 1\n", "section 'optim' must be a mapping"),
                          ("optim:\n  max_stepz: 5\n", r"unknown config key optim\.'max_stepz'; allowed keys: optim\.lr")):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_config([CONFIGS / "tiny_jepa.yaml", path])
    with pytest.raises(ConfigError, match=f"config file {tmp_path / 'missing.yaml'} cannot be read"):
        load_config(tmp_path / "missing.yaml")


def test_every_option_declares_its_help_and_whether_it_changes_what_a_run_learns():
    cell = {}
    for key, f, _ in config_module.fields_by_key():
        assert f.metadata["help"] and isinstance(f.metadata["cell"], bool), key  # made by recipe() or runtime()
        cell[key] = f.metadata["cell"]
    for key in ("model.pretrained", "data.source", "diffusion.t_context", "jepa.lambda", "jepa.t_target", "optim.lr",
                "optim.epochs", "anchor.l2_lambda", "tiny.hidden_size"):
        assert cell[key], key
    for key in ("run.seed", "run.output_dir", "run.engine", "data.path", "data.data_dir", "jepa.collapse_every",
                "model.gradient_checkpointing", "model.compile"):
        assert not cell[key], key


def test_mask_rates_are_read_once_as_lo_hi_and_written_back_as_given(tmp_path):
    cfg = load_config(None, ["--diffusion.t_context", "[0.1, 0.3]", "--jepa.t_target", "0.9"])
    assert (cfg.diffusion.t_context, cfg.jepa.t_target) == ((0.1, 0.3), (0.9, 0.9))
    assert (to_dict(cfg)["diffusion"]["t_context"], to_dict(cfg)["jepa"]["t_target"]) == ([0.1, 0.3], 0.9)
    save_config(cfg, tmp_path / "config.yaml")
    assert "t_target: 0.9\n" in (tmp_path / "config.yaml").read_text()
    assert config_module.read_run_config(tmp_path / "config.yaml").diffusion.t_context == (0.1, 0.3)


def test_help_lists_every_option_with_its_default_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for line in ("--jepa.lambda (default 1.0)", "--jepa.predictor_depth (default 2)", "--optim.lr (default 1e-05)",
                 "--anchor.l2_lambda (default 0.0)", "--optim.global_batch_size (default 0)"):
        assert line in text
    assert "0 = identity predictor" in text and "weight of 1 - cos(pred, z_H)" in text
    # every field of every section is listed, with its help
    for section in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(section.default_factory):
            key = "lambda" if f.name == "lambda_" else f.name
            assert f"--{section.name}.{key} (default " in text and f.metadata["help"] in text


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_resolves_under_dry_run(name, capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    path = CONFIGS / f"{name}.yaml"
    data = yaml.safe_load(path.read_text()).get("data", {})
    extra = ["--data.path", "completed-by-caller"] if data.get("source") in ("jsonl", "text") and \
        not data.get("path") else []
    main(["--config", str(path), "--dry-run", "--run.output_dir", str(tmp_path / "never"), *extra])
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed)
    expected = resolve_batch(load_config(path, ["--run.output_dir", str(tmp_path / "never"), *extra]), 1)
    assert to_dict(expected) == resolved
    assert "rows per optimizer step" in printed and not (tmp_path / "never").exists()


def test_global_batch_derives_the_accumulation_from_the_world_size(monkeypatch, capsys):
    """The paper's 32 on 2 ranks at micro-batch 2 is accumulation 8; a world size that does not divide fails."""
    cfg = load_config(None, ["--optim.global_batch_size", "32", "--optim.micro_batch_size", "2"])
    assert resolve_batch(cfg, 2).optim.grad_accum == 8
    assert resolve_batch(cfg, 8).optim.grad_accum == 2 and deepspeed_config(cfg)["gradient_accumulation_steps"] == 2
    with pytest.raises(ConfigError, match=r"optim.global_batch_size 32 cannot be split over 3 ranks x "
                                          r"optim.micro_batch_size 2: it must be a multiple of 6"):
        resolve_batch(cfg, 3)
    unset = load_config(None, ["--optim.grad_accum", "5"])
    assert resolve_batch(unset, 4).optim.grad_accum == 5  # 0 keeps today's behaviour
    monkeypatch.setenv("WORLD_SIZE", "2")
    main(["--config", str(CONFIGS / "gsm8k_jepa.yaml"), "--dry-run"])
    assert "# 2 rank(s) x micro-batch 2 x accumulation 8 = 32 rows per optimizer step" in capsys.readouterr().out


def test_indivisible_world_size_fails_before_any_model_loads(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "3")
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"config error: optim.global_batch_size 32 cannot be split over 3 ranks"):
        main(["--config", str(CONFIGS / "gsm8k_jepa.yaml"), "--model.pretrained", str(tmp_path / "missing"),
              "--run.output_dir", str(out)])
    assert not out.exists()


def test_later_config_files_override_earlier_ones(tmp_path):
    override = tmp_path / "o.yaml"
    override.write_text("model:\n  family: dream\njepa:\n  lambda: 0.25\n")
    cfg = load_config([CONFIGS / "gsm8k_jepa.yaml", override], ["--jepa.predictor_depth", "5"])
    assert (cfg.model.family, cfg.jepa.lambda_, cfg.jepa.predictor_depth) == ("dream", 0.25, 5)
    assert cfg.data.source == "gsm8k"


def test_config_and_model_args_share_one_coercion():
    from lm_eval_diffusion import coerce as shared
    from lm_eval_diffusion.harness import DiffusionLMArgs

    assert config_module.coerce is shared.coerce  # the trainer imports the plugin's helper, not a copy
    args, _ = DiffusionLMArgs.from_kwargs({"pretrained": "x", "steps": "128.0", "mask_id": "None",
                                           "batch_size": "Auto", "logits_eos_inf": "yes", "eps": "1e-3"})
    assert (args.steps, args.mask_id, args.batch_size, args.logits_eos_inf, args.eps) == (128, None, "auto", True, 1e-3)
    cfg = load_config(None, ["--optim.max_steps", "128.0", "--model.mask_id", "None", "--run.tensorboard", "yes",
                             "--optim.lr", "1e-3"])
    assert (cfg.optim.max_steps, cfg.model.mask_id, cfg.run.tensorboard, cfg.optim.lr) == (128, None, True, 1e-3)
    for bad in ("1.5", "true"):
        with pytest.raises(ConfigError, match=r"optim.max_steps: expected an integer"):
            load_config(None, ["--optim.max_steps", bad])


def test_allowed_values_are_defined_once():
    import lm_eval_diffusion
    from dllm_jepa_train import objectives
    from lm_eval_diffusion import backbone, task_data

    assert backbone.FAMILIES is lm_eval_diffusion.FAMILIES and config_module.MODEL_FAMILIES[1:] == backbone.FAMILIES
    assert objectives.LOSS_NORMS is config_module.LOSS_NORMS
    assert config_module.data_sources()[:-2] == task_data.TASKS == task_registry.task_names(training_only=True)


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


def test_toy_names_are_ordinary_inputs_checked_before_any_load(tmp_path):
    # The trainer takes toy models and data by name; the toy package resolves them at build time.
    cfg = load_config(CONFIGS / "tiny_jepa.yaml", ["--run.output_dir", str(tmp_path)])
    assert (cfg.model.pretrained, cfg.data.source) == ("toy:llada", "toy:gsm8k")
    with pytest.raises(ConfigError, match=r"model.pretrained.*toy:llada, toy:dream, toy:generic"):
        load_config(CONFIGS / "tiny_jepa.yaml", ["--model.pretrained", "toy:gpt"])
    with pytest.raises(ConfigError, match=r"data.source.*toy:text"):
        load_config(CONFIGS / "tiny_jepa.yaml", ["--data.source", "toy:wiki"])
    with pytest.raises(ConfigError, match=r"data.data_dir / data.path: must be empty with data.source toy:gsm8k"):
        load_config(CONFIGS / "tiny_jepa.yaml", ["--data.data_dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"model.pretrained: required"):
        load_config(CONFIGS / "tiny_jepa.yaml", ["--model.pretrained", ""])
