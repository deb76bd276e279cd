"""The model-family registry: detection, id rules, padding conventions, checkpointing, registration."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lm_eval_diffusion import families
from lm_eval_diffusion.families import FAMILIES, Family, detect_family, get_family, register_family


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry that the test may add to; the built-ins stay as they are."""
    monkeypatch.setattr(families, "_registry", dict(families._registry))


@pytest.mark.parametrize("model_type, family", [
    ("llada", "llada"), ("LLaDA", "llada"), ("Dream", "dream"), ("bert", "generic"), ("", "generic"),
])
def test_a_config_is_recognised_by_its_model_type(model_type, family):
    assert detect_family(SimpleNamespace(model_type=model_type)) == family
    assert detect_family(SimpleNamespace()) == "generic"  # no model_type at all


def test_builtin_rules(tiny_tokenizer):
    config = SimpleNamespace(model_type="x", vocab_size=len(tiny_tokenizer), mask_token_id=7, eos_token_id=None,
                             pad_token_id=None)
    eos, eot = tiny_tokenizer.eos_token_id, tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    specs = {name: get_family(name).resolve_spec(config, tiny_tokenizer, None, "ckpt") for name in FAMILIES}
    # LLaDA and Dream read the config's mask id; a generic encoder has only its tokenizer's.
    assert {n: s.mask_id for n, s in specs.items()} == {"llada": 7, "dream": 7, "generic": tiny_tokenizer.mask_token_id}
    assert {n: s.shift_logits for n, s in specs.items()} == {"llada": False, "dream": True, "generic": False}
    for name, spec in specs.items():
        assert spec.family == name and spec.stop_ids == (eos, eot) and spec.eot_id == eot
        assert spec.eos_id == eos and spec.pad_id == tiny_tokenizer.pad_token_id
    assert {n: get_family(n).default_sampler for n in FAMILIES} == {"llada": "llada", "dream": "dream",
                                                                  "generic": "llada"}
    for name in FAMILIES:
        families.check_family(get_family(name))  # the built-ins meet what a registered family must


def test_padding_conventions_by_hand():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    positions = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 3]])
    assert get_family("llada").padding(mask).keys() == {"attention_mask"}
    generic = get_family("generic").padding(mask)
    assert torch.equal(generic["attention_mask"], mask) and torch.equal(generic["position_ids"], positions)
    dream = get_family("dream").padding(mask)
    assert dream["attention_mask"].shape == (2, 1, 4, 4) and dream["attention_mask"].dtype == torch.bool
    assert dream["attention_mask"][0, 0].tolist() == [[False, False, True, True]] * 4  # keys, for every query
    assert torch.equal(dream["position_ids"], positions)
    assert get_family("llada").forward_kwargs == {"use_cache": False} == get_family("llada").config_overrides
    assert get_family("dream").forward_kwargs == {} == get_family("generic").forward_kwargs


def test_checkpointing_switch_errors_name_the_config_key():
    from dllm_jepa_train.engines import enable_gradient_checkpointing

    with pytest.raises(ValueError, match=r"model.gradient_checkpointing: Linear supports neither the HF switch "
                                         r"nor set_activation_checkpointing; set model.gradient_checkpointing false"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2), "llada")
    with pytest.raises(ValueError, match=r"Linear does not support the HF gradient-checkpointing switch"):
        enable_gradient_checkpointing(torch.nn.Linear(2, 2), "generic")


def test_a_registered_family_joins_every_list_of_allowed_families(registry):
    from dllm_jepa_train.config import MODEL_FAMILIES, ConfigError, load_config

    with pytest.raises(ConfigError, match=r"model.family: 'mdm' is not allowed; allowed values: auto, llada, dream, "
                                        r"generic$"):
        load_config(None, ["--model.family", "mdm"])
    register_family(Family(name="mdm", model_types=("mdm",)))
    assert tuple(FAMILIES) == ("llada", "dream", "generic", "mdm") and FAMILIES[-1] == "mdm"
    assert MODEL_FAMILIES == ("auto", "llada", "dream", "generic", "mdm")
    assert load_config(None, ["--model.family", "mdm"]).model.family == "mdm"
    assert detect_family(SimpleNamespace(model_type="MDM")) == "mdm"


@pytest.mark.parametrize("family, message", [
    (Family(name="llada"), r"family 'llada' is already registered; pass replace=True"),
    (Family(name="mine", model_types=("dream",)), r"model_type 'dream' is already recognised by family 'dream'"),
    (Family(name="mine", default_sampler="maskgit"), r"default_sampler 'maskgit' is not one of llada, dream"),
    (Family(name="mine", is_fallback=True), r"family 'generic' is already the fallback"),
    (Family(name="mine", model_types=("Mine",)), r"model_types are matched lower-cased"),
    (Family(name="My,family"), r"expected lowercase letters, digits or _"),
])
def test_registration_refuses_what_would_be_ambiguous(registry, family, message):
    with pytest.raises(ValueError, match=message):
        register_family(family)
    assert tuple(FAMILIES) == ("llada", "dream", "generic")


def test_unknown_family_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown family 'gpt'; allowed: llada, dream, generic"):
        get_family("gpt")
