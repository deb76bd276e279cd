"""The start-of-run memory estimate (dllm_jepa_train/memory.py) against hand-computed cases."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dllm_jepa_train.memory import (
    LLADA_8B, Shape, adapter_activation_values, backbone_shape, llada_8b_table, lora_parameters, memory_estimate,
    predictor_parameters, shape_estimate, zero_bucket_elements,
)

GB = 1e9
# width 8, 3 layers, MLP 16, vocabulary 10: one layer keeps 10 x 8 + 4 x 16 = 144 values per token
SMALL = Shape(width=8, layers=3, heads=2, mlp_hidden=16, vocab=10)


def test_full_fine_tuning_state_under_zero2_on_8_ranks():
    est = memory_estimate(num_trainable=8_000_000_000, num_ema=7_500_000_000, zero_stage=2, world_size=8,
                          num_anchor=8_000_000_000)
    assert est["weights_trainable"] == pytest.approx(16.0) and est["gradients"] == pytest.approx(2.0)
    assert est["optimizer"] == pytest.approx(12.0)  # (4 master + 8 Adam) B x 8e9 / 8
    assert est["ema"] == pytest.approx(45.0)  # (4 fp32 + 2 bf16 shadow) B x 7.5e9
    assert est["anchor_base"] == pytest.approx(16.0)
    assert est["zero_buckets"] == pytest.approx(2.0)  # 2 x 5e8 elements x 2 B
    assert est["activations"] == est["logits"] == est["target_forward"] == 0  # no shape given
    assert est["total"] == pytest.approx(16 + 2 + 12 + 45 + 16 + 2)


def test_zero_stages_partition_optimizer_then_gradients_and_the_torch_engine_nothing():
    def parts(engine, stage):
        est = memory_estimate(num_trainable=1_000_000_000, engine=engine, zero_stage=stage, world_size=4)
        return est["gradients"], est["optimizer"], est["zero_buckets"]

    assert parts("deepspeed", 0) == pytest.approx((2.0, 12.0, 0.0))
    assert parts("deepspeed", 1) == pytest.approx((2.0, 3.0, 2.0))
    assert parts("deepspeed", 2) == pytest.approx((0.5, 3.0, 2.0))
    # torch engine: m, v in the weights' dtype, no master, one process
    est = memory_estimate(num_trainable=1_000_000_000, engine="torch", zero_stage=2, world_size=4, weight_bytes=4)
    assert (est["weights_trainable"], est["gradients"], est["optimizer"]) == pytest.approx((4.0, 4.0, 8.0))
    with pytest.raises(ValueError, match="engine must be"):
        memory_estimate(num_trainable=1, engine="fsdp")


def test_lora_keeps_the_frozen_base_at_its_dtype_and_optimizer_state_for_adapters_only():
    lora = memory_estimate(num_trainable=100_000_000, num_frozen=8_000_000_000, num_ema=100_000_000,
                           bucket_elements=0)
    assert lora["weights_frozen"] == pytest.approx(16.0) and lora["weights_trainable"] == pytest.approx(0.2)
    assert lora["gradients"] == pytest.approx(0.2) and lora["optimizer"] == pytest.approx(1.2)
    assert lora["ema"] == pytest.approx(0.6) and lora["total"] == pytest.approx(16 + 0.2 + 0.2 + 1.2 + 0.6)
    # torch engine, fp32 weights: the base at 4 B; no shadow without bf16 compute
    fp32 = memory_estimate(num_trainable=100_000_000, num_frozen=8_000_000_000, num_ema=100_000_000, engine="torch",
                           weight_bytes=4, compute_bytes=4)
    assert fp32["weights_frozen"] == pytest.approx(32.0) and fp32["optimizer"] == pytest.approx(0.8)
    assert fp32["ema"] == pytest.approx(0.4)


def test_checkpointing_keeps_each_layer_input_plus_one_layer_instead_of_every_layer():
    common = {"num_trainable": 0, "bucket_elements": 0, "shape": SMALL, "micro_batch": 2, "length": 5}
    on = memory_estimate(**common, checkpointing=True)
    off = memory_estimate(**common, checkpointing=False)
    # 10 tokens, bf16: inputs 3 x 10 x 8 x 2 = 480 B, one layer 10 x 144 x 2 = 2,880 B
    assert on["activations"] * GB == pytest.approx(480 + 2880)
    assert off["activations"] * GB == pytest.approx(3 * 2880)
    # logits 10 x 10 x 2 B; masked fp32 cast + log-probabilities 8 B x 0.2 x 10 x 10
    assert on["logits"] * GB == pytest.approx(200 + 160) and on["logits"] == off["logits"]
    assert on["target_forward"] == 0  # baseline
    shifted = memory_estimate(**common, shifted_logits=True, masked_fraction=1.0)
    assert shifted["logits"] * GB == pytest.approx(400 + 800)
    fp32 = memory_estimate(**common, compute_bytes=4, checkpointing=False)
    assert fp32["activations"] == pytest.approx(2 * off["activations"])
    # grouped-query attention: k, v and the rotated k at kv width 4: 7 x 8 + 3 x 4 + 4 x 16 = 132 values
    gqa = memory_estimate(**{**common, "shape": Shape(8, 3, 2, 16, 10, kv_heads=1)}, checkpointing=False)
    assert gqa["activations"] * GB == pytest.approx(3 * 10 * 132 * 2)
    # adapters: 5 values at 2 B and 3 mask bytes per token and layer, in the one recomputed layer only
    lora = memory_estimate(**common, adapter_values=(5, 3))
    assert (lora["activations"] - on["activations"]) * GB == pytest.approx(10 * (5 * 2 + 3))


def test_jepa_adds_the_predictor_the_ema_and_the_target_forward():
    base = shape_estimate(SMALL, micro_batch=2, length=5)
    jepa = shape_estimate(SMALL, use_jepa=True, predictor_depth=1, micro_batch=2, length=5)
    num_predictor = 4 * 64 + 32 + 2 * 8 * 32 + 32 + 8 + 32 + 16  # attention, MLP (H 32), 2 + 1 LayerNorms: 888
    assert predictor_parameters(8, 1) == num_predictor
    assert (jepa["weights_trainable"] - base["weights_trainable"]) * GB == pytest.approx(2 * num_predictor)
    assert (jepa["gradients"] - base["gradients"]) * GB == pytest.approx(2 * num_predictor)
    assert (jepa["optimizer"] - base["optimizer"]) * GB == pytest.approx(12 * num_predictor)
    num_params = 2 * 10 * 8 + 3 * (4 * 64 + 3 * 8 * 16 + 16) + 8  # embedding, head, 3 blocks, final norm
    assert SMALL.num_parameters() == num_params
    assert jepa["ema"] * GB == pytest.approx(6 * (num_params - 10 * 8))  # no head in the EMA
    assert base["ema"] == base["target_forward"] == 0
    assert jepa["target_forward"] * GB == pytest.approx((4 * 10 * 8 + 10 * 144) * 2)  # 4 hidden states + 1 layer
    assert jepa["activations"] == base["activations"]
    # LoRA's target is the online model with the adapters' EMA swapped in: its head runs too (10 x 10 x 2 B)
    lora = shape_estimate(SMALL, lora_rank=1, use_jepa=True, micro_batch=2, length=5)
    assert (lora["target_forward"] - jepa["target_forward"]) * GB == pytest.approx(200)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_predictor_count_matches_the_built_predictor(depth):
    from dllm_jepa_train.jepa import build_predictor

    built = sum(p.numel() for p in build_predictor(16, depth, 2, 4.0).parameters())
    assert predictor_parameters(16, depth) == built


def test_lora_adapter_count_on_llada_8b_shapes():
    # rank 16: q/k/v/attn_out 16 x (4096 + 4096), ff_proj/up_proj 16 x (4096 + 12288), ff_out 16 x (12288 + 4096)
    per_block = 4 * 16 * 8192 + 2 * 16 * 16384 + 16 * 16384
    assert lora_parameters(LLADA_8B, 16) == 32 * per_block == 41_943_040
    assert LLADA_8B.num_parameters() == 8_015_581_184
    gqa = Shape(width=8, layers=1, heads=4, mlp_hidden=16, vocab=10, kv_heads=1)
    assert lora_parameters(gqa, 2, ("k_proj", "down_proj")) == 2 * (8 + 2) + 2 * (16 + 8)
    with pytest.raises(ValueError, match="unknown LoRA modules \\['wqkv'\\]"):
        lora_parameters(LLADA_8B, 16, ("q_proj", "wqkv"))


def test_llada_8b_lora_jepa_fits_one_80_gb_gpu_and_full_fine_tuning_does_not():
    lora = shape_estimate(LLADA_8B, lora_rank=16, use_jepa=True, predictor_depth=3, world_size=1)
    full = shape_estimate(LLADA_8B, use_jepa=True, predictor_depth=3, world_size=1)
    assert lora["total"] < 80 < full["total"]
    assert lora["weights_frozen"] == pytest.approx(2 * 8_015_581_184 / GB)


def test_backbone_shape_reads_llada_and_hf_names():
    llada = SimpleNamespace(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288,
                            vocab_size=126464, embedding_size=126464)
    assert backbone_shape(llada) == Shape(4096, 32, 32, 12288, 126464, 32)
    dream = SimpleNamespace(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                            intermediate_size=18944, vocab_size=152064)
    assert backbone_shape(dream).kv_width == 512
    no_mlp = SimpleNamespace(d_model=64, n_layers=2, n_heads=4, vocab_size=384)
    assert backbone_shape(no_mlp).mlp_hidden == 256
    with pytest.raises(ValueError, match="number of layers"):
        backbone_shape(SimpleNamespace(hidden_size=8, num_attention_heads=2, vocab_size=10))


def test_zero_bucket_elements_follow_the_deepspeed_block():
    assert zero_bucket_elements({"stage": 2, "overlap_comm": True, "contiguous_gradients": True}) == 1_000_000_000
    assert zero_bucket_elements({"overlap_comm": False, "reduce_bucket_size": 2e8}) == 200_000_000
    assert zero_bucket_elements({"contiguous_gradients": False, "overlap_comm": True}) == 0


def test_adapter_values_counted_on_a_peft_model():
    peft = pytest.importorskip("peft")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q = torch.nn.Linear(8, 8)
            self.ff = torch.nn.Linear(8, 16)
            self.out = torch.nn.Linear(16, 8)

    def wrapped(dropout):
        model = torch.nn.Sequential(Block(), Block())
        config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["q", "out"])
        return peft.get_peft_model(model, config)

    # per block: ranks 4 + 4; with dropout the inputs' copies 8 + 16 (and as many mask bytes)
    assert adapter_activation_values(wrapped(0.1), layers=2) == (8 + 24, 24)
    assert adapter_activation_values(wrapped(0.0), layers=2) == (8, 0)


def test_docs_show_the_table_the_module_prints():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "training.md").read_text()
    assert llada_8b_table() in docs
    assert "python -m dllm_jepa_train.memory" in docs
