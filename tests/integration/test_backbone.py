"""Backbone loading: family detection, ids from config/tokenizer, shifted logits, clear errors."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil

import pytest
import torch

from lm_eval_diffusion.backbone import load_backbone, model_forward


@pytest.mark.parametrize("family", ["generic", "llada", "dream"])
def test_family_detected_and_ids_from_tokenizer(tiny_checkpoints, tiny_tokenizer, family):
    bb = load_backbone(str(tiny_checkpoints[family]))
    assert bb.spec.family == family
    assert bb.spec.mask_id == tiny_tokenizer.mask_token_id
    assert tiny_tokenizer.eos_token_id in bb.spec.stop_ids
    assert tiny_tokenizer.convert_tokens_to_ids("<|eot_id|>") in bb.spec.stop_ids
    assert bb.spec.shift_logits == (family == "dream")
    assert bb.dtype == torch.float32  # auto on CPU
    assert not bb.model.training


def test_dream_logits_are_shifted_right_by_one(tiny_checkpoints):
    bb = load_backbone(str(tiny_checkpoints["dream"]))
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    raw = bb.model(input_ids=ids).logits
    aligned = bb.logits(ids)
    assert torch.equal(aligned[:, 1:], raw[:, :-1])
    assert torch.equal(aligned[:, 0], raw[:, 0])


def test_padding_probe_detects_models_that_ignore_the_mask(tiny_checkpoints):
    assert load_backbone(str(tiny_checkpoints["llada"])).honours_padding
    assert load_backbone(str(tiny_checkpoints["generic"])).honours_padding
    assert load_backbone(str(tiny_checkpoints["dream"])).honours_padding
    assert not load_backbone(str(tiny_checkpoints["llada_nopad"])).honours_padding


def test_family_override_and_mask_override(tiny_checkpoints):
    with pytest.warns(UserWarning, match="using 'generic'"):
        bb = load_backbone(str(tiny_checkpoints["llada"]), family="generic", mask_id=7, probe_padding=False)
    assert bb.spec.family == "generic" and bb.spec.mask_id == 7


def test_unknown_family_is_a_clear_error(tiny_checkpoints):
    with pytest.raises(ValueError, match="unknown family 'gpt'.*llada, dream, generic"):
        load_backbone(str(tiny_checkpoints["llada"]), family="gpt")


def test_missing_mask_token_names_checkpoint_and_argument(tiny_checkpoints, tmp_path):
    ckpt = tmp_path / "nomask"
    shutil.copytree(tiny_checkpoints["generic"], ckpt)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        data = json.loads((ckpt / name).read_text())
        data.pop("mask_token", None)
        (ckpt / name).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"no mask token.*mask_id="):
        load_backbone(str(ckpt))
    assert load_backbone(str(ckpt), mask_id=2, probe_padding=False).spec.mask_id == 2


def test_tokenizer_larger_than_vocabulary_is_rejected(tiny_checkpoints, tmp_path):
    ckpt = tmp_path / "small_vocab"
    shutil.copytree(tiny_checkpoints["llada"], ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["vocab_size"] = 100
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="tokenizer has 384 tokens but the model's vocabulary has 100"):
        load_backbone(str(ckpt))


def test_missing_checkpoint_says_so(tmp_path):
    with pytest.raises(OSError, match="cannot load checkpoint"):
        load_backbone(str(tmp_path / "nope"))


def test_hidden_states_have_one_entry_per_layer_plus_embeddings(tiny_checkpoints):
    bb = load_backbone(str(tiny_checkpoints["llada"]))
    logits, hidden = model_forward(bb.model, bb.spec, torch.tensor([[3, 4, 5]]), output_hidden_states=True)
    assert logits.shape == (1, 3, bb.spec.vocab_size)
    assert len(hidden) == 3 and hidden[-1].shape == (1, 3, 64)


def _with_post_processor(tokenizer, single: str, specials: list[str]):
    """A copy of `tokenizer` whose default encoding wraps texts as `single` (e.g. "<bos> $A")."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    raw = copy.deepcopy(tokenizer.backend_tokenizer)
    raw.post_processor = processors.TemplateProcessing(
        single=single, special_tokens=[(t, raw.token_to_id(t)) for t in specials])
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   mask_token="<|mdm_mask|>")


def test_encode_prompt_keeps_bos_only_where_the_tokenizer_adds_it(tiny_tokenizer):
    from lm_eval_diffusion.backbone import encode_prompt

    plain = tiny_tokenizer("Question: 2+2?", add_special_tokens=False)["input_ids"]
    assert encode_prompt(tiny_tokenizer, "Question: 2+2?") == plain  # no BOS defined or added
    bos_first = _with_post_processor(tiny_tokenizer, "<|endoftext|> $A", ["<|endoftext|>"])
    bos = bos_first.bos_token_id
    assert encode_prompt(bos_first, "Question: 2+2?") == [bos] + plain
    # A BERT-style template adds a trailing separator; a prompt must not end in it.
    wrapped = _with_post_processor(tiny_tokenizer, "<|endoftext|> $A <|eot_id|>", ["<|endoftext|>", "<|eot_id|>"])
    assert encode_prompt(wrapped, "Question: 2+2?") == [bos] + plain
    assert encode_prompt(bos_first, "Question: 2+2?", add_bos=False) == plain


def test_a_family_registered_from_outside_loads_and_generates(tiny_checkpoints, tmp_path, monkeypatch):
    """A family defined here (LLaDA's rules renamed, Dream's sampler as its default, its own padding rule)
    recognises a made-up model_type through load_backbone and the harness, with no project file edited."""
    from lm_eval_diffusion import families
    from lm_eval_diffusion.backbone import load_config_and_tokenizer
    from lm_eval_diffusion.harness import DiffusionLM

    ckpt = tmp_path / "tinymdm"
    shutil.copytree(tiny_checkpoints["llada"], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    (ckpt / "config.json").write_text(json.dumps({**config, "model_type": "tinymdm"}))
    assert families.detect_family(load_config_and_tokenizer(str(ckpt))[0]) == "generic"  # unknown: the fallback

    padded_forwards = []

    def pad_mask_counted(attention_mask):
        padded_forwards.append(tuple(attention_mask.shape))
        return {"attention_mask": attention_mask}

    monkeypatch.setattr(families, "_registry", dict(families._registry))  # undone after the test
    families.register_family(families.Family(
        name="tinymdm", model_types=("tinymdm",), mask_id_from_config=True, padding=pad_mask_counted,
        forward_kwargs={"use_cache": False}, config_overrides={"use_cache": False}, default_sampler="dream",
        checkpointing=families.llada_checkpointing))
    assert "tinymdm" in families.FAMILIES

    bb = load_backbone(str(ckpt))
    reference = load_backbone(str(tiny_checkpoints["llada"]), probe_padding=False)
    assert bb.spec.family == "tinymdm" and bb.honours_padding and padded_forwards  # the probe used our rule
    assert bb.spec == dataclasses.replace(reference.spec, family="tinymdm")
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    assert torch.equal(bb.logits(ids), reference.logits(ids))

    contexts = ["Question: Tom has 3 apples", "dog", "SELECT count(*) FROM singer"]  # unequal: padded batches
    outputs = {}
    for name, path, args in (("tinymdm", ckpt, {}), ("llada", tiny_checkpoints["llada"], {"sampler": "dream"})):
        lm = DiffusionLM(pretrained=str(path), device="cpu", steps=8, gen_length=16, batch_size=3, **args)
        lm.postprocess = lambda ids, until: " ".join(map(str, ids))  # raw ids, before any cut
        assert lm.sampler == "dream"  # tinymdm: its family's default sampler
        padded_forwards.clear()
        outputs[name] = lm.generate_until([_Request(c, {"until": ["\n"]}) for c in contexts])
        assert bool(padded_forwards) == (name == "tinymdm")
    assert outputs["tinymdm"] == outputs["llada"] and len(set(outputs["llada"])) > 1


class _Request:
    """The part of lm-eval's Instance that an LM reads."""

    def __init__(self, *args):
        self.args = args
