"""Section lora of the trainer config (issue 22): allowed values, and which fields change a run's cell."""

from __future__ import annotations

import dataclasses
import re

import pytest

from dllm_jepa_train.config import ConfigError, LoraConfig, load_config
from lm_eval_diffusion.families import get_family, lora_target_pattern


def test_lora_is_off_by_default_and_its_recipe_fields_change_the_cell():
    cfg = load_config(None, ["--model.pretrained", "x"])
    assert cfg.lora.enabled is False
    cell = {f.name: f.metadata["cell"] for f in dataclasses.fields(LoraConfig)}
    assert cell == {"enabled": True, "rank": True, "alpha": True, "dropout": True, "target_modules": True,
                    "export_merged": False}  # compare never pools LoRA and full fine-tuning runs


@pytest.mark.parametrize(("override", "message"), [
    (["--lora.rank", "0"], r"lora.rank: must be >= 1"),
    (["--lora.dropout", "1.0"], r"lora.dropout: must be in \[0, 1\)"),
    (["--lora.target_modules", "[q_proj, 'a b']"], r"lora.target_modules: expected a list of module names"),
])
def test_bad_lora_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["--model.pretrained", "x", *override])


def test_target_modules_read_as_names_and_join_the_family_blocks():
    cfg = load_config(None, ["--model.pretrained", "x", "--lora.target_modules", "[q_proj, mlp.0]"])
    assert cfg.lora.target_modules == ("q_proj", "mlp.0")
    pattern = lora_target_pattern(get_family("llada"), cfg.lora.target_modules)
    assert re.fullmatch(pattern, "model.transformer.blocks.3.mlp.0")
    assert not re.fullmatch(pattern, "model.transformer.blocks.3.mlp.01")
    assert not re.fullmatch(pattern, "model.transformer.ff_out")
