"""The start-of-run memory estimate per rank: weights, gradients, optimizer state, EMA, anchor base,
DeepSpeed's gradient buckets, and activations for micro-batch x length.

    python -m dllm_jepa_train.memory    # the LLaDA-8B table of docs/training.md (CPU, seconds)

`memory_estimate` takes numbers and returns GB, so docs and benchmarks call it without a model;
`shape_estimate` derives the numbers from a backbone shape (LLaDA-8B: `LLADA_8B`), a LoRA rank and a
predictor depth; the trainer's `_log_memory` counts its real parameters and calls `memory_estimate`.
GB = 1e9 bytes. What it assumes (all per rank):

State
- Weights: trainable at `weight_bytes` (DeepSpeed bf16: 2; torch engine: the loaded dtype, fp32 in a
  run, 4), frozen at `frozen_bytes` (LoRA's base: 2 under bf16 DeepSpeed, 4 under the torch engine).
  ZeRO 1/2 never partition weights.
- Gradients: trainable parameters only, in the weights' dtype; ZeRO-2 divides them by the world size.
- Optimizer: AdamW m and v in fp32 (8 B) plus an fp32 master (4 B) where the weights are not fp32
  (DeepSpeed); ZeRO 1 and 2 divide it by the world size. The torch engine keeps m and v in the
  weights' dtype and no master. Trainable parameters only.
- EMA: fp32 master (4 B) of what the target follows (full fine-tuning: the backbone less its output
  head; LoRA: the adapters), plus the compute-dtype shadow that runs the target forward (2 B) when
  there is one (`jepa.ema_shadow` with bf16 compute; under LoRA only with bf16 adapters).
- Anchor base (`anchor.l2_lambda > 0`): a copy of the trainable backbone parameters in their dtype.
- ZeRO buckets (DeepSpeed, ZeRO >= 1, as DeepSpeed 0.19.8's `setup_buckets`): with contiguous
  gradients (our DeepSpeed JSON sets them) one buffer of `reduce_bucket_size` elements (5e8 by
  default), two with overlap_comm (set too), in the weights' dtype (`zero_bucket_elements`); ZeRO-1
  may stage them in fp32 instead (not modelled).

Activations (B rows x L tokens, compute dtype c bytes: 2 for bf16, 4 for fp32; width D, MLP width F,
key/value width Dkv = D x kv_heads / heads, vocabulary V)
- One layer's intermediates kept for backward, per token: 7 D + 3 Dkv + 4 F values: the layer input,
  the two norm outputs, q, the rotated q, the attention output, the residual sum (7 D); k, v, the
  rotated k (3 Dkv); the two MLP projections, the gated activation and the product (4 F, a SwiGLU
  block as LLaDA's and Dream's). A fused attention kernel (no L x L score matrix); fp32 norm internals
  and the backward's gradient transients of one layer are not counted.
- LoRA adds, per adapted module, its rank's values (A x, kept for B's backward) and, with adapter
  dropout > 0, the dropped copy of its input (in_features values at c bytes) and the dropout mask
  (1 B each): `adapter_values_per_layer`. The base layers' intermediates are counted as in full
  fine-tuning (an upper bound: frozen matmuls need not keep their inputs).
- Checkpointing on: every layer's saved input (layers x B x L x D) plus one layer's recompute (the
  intermediates above). Off: every layer's intermediates.
- Logits: B x L x V at c bytes (a second copy where the family shifts its logits, e.g. Dream), plus the
  masked positions' fp32 cross-entropy: `diffusion_loss` casts only the masked positions to fp32 (4 B)
  and log_softmax keeps its fp32 output (4 B): 8 B x masked_fraction x B x L x V. The fraction
  assumed masked is the context view's t (the top of its range when t is drawn per row: the trainer
  passes `diffusion.t_context`'s upper end), counted over all L positions, prompts included (an upper
  bound: prompts are never masked).
- JEPA's target forward (no grad): the layers + 1 hidden states that output_hidden_states keeps plus
  one layer's intermediates, plus its logits (B x L x V at c bytes) where the target keeps the head
  (LoRA: the target is the online peft model with the adapters' EMA swapped in; full fine-tuning's
  EMA copy drops its head). It runs before the context forward, so
  the two never coexist: adding them is an upper bound. The predictor's activations (B x D per layer)
  are left out.
Not counted: the CUDA context and kernels' workspaces, allocator fragmentation, the tokenizer's and data
loader's host memory, torch autocast's bf16 weight copies during the torch engine's forward.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dllm_jepa_train.jepa import backbone_heads, backbone_width

GB = 1e9
REDUCE_BUCKET_SIZE = 500_000_000  # DeepSpeed's default zero_optimization.reduce_bucket_size (elements)
LLADA_LORA_MODULES = ("q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out")


@dataclass(frozen=True)
class Shape:
    """A transformer backbone's sizes: width D, layers, heads, MLP width F, vocabulary V, key/value heads."""

    width: int
    layers: int
    heads: int
    mlp_hidden: int
    vocab: int
    kv_heads: int = 0  # 0: as many as heads (no grouped-query attention)

    @property
    def kv_width(self) -> int:
        return self.width * (self.kv_heads or self.heads) // self.heads

    def num_parameters(self) -> int:
        """Embedding, untied head, per layer attention and a SwiGLU MLP (3 D F) and two RMSNorms, final norm."""
        D, F = self.width, self.mlp_hidden
        per_layer = 2 * D * D + 2 * D * self.kv_width + 3 * D * F + 2 * D
        return 2 * self.vocab * D + self.layers * per_layer + D

    def layer_values(self) -> int:
        """Values per token that one layer keeps for backward (7 D + 3 Dkv + 4 F; module docstring)."""
        return 7 * self.width + 3 * self.kv_width + 4 * self.mlp_hidden


# LLaDA-8B-Base: d_model 4096, 32 blocks, 32 heads, SwiGLU 12,288, vocabulary 126,464. LLaDA's config.json
# sets n_kv_heads = n_heads = 32 (no grouped-query attention); not checked here (no hub cache offline).
LLADA_8B = Shape(width=4096, layers=32, heads=32, mlp_hidden=12288, vocab=126464)


def _first(config: Any, names: Sequence[str]) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if value:
            return int(value)
    return None


def backbone_shape(config: Any) -> Shape:
    """The `Shape` of a HF config: LLaDA's (d_model, n_layers, n_heads, n_kv_heads, mlp_hidden_size,
    embedding_size / vocab_size) or Dream's / HF's (hidden_size, num_hidden_layers, num_key_value_heads,
    intermediate_size, vocab_size); MLP width 4 D (or LLaDA's mlp_ratio x D) where a config names none."""
    width = backbone_width(config)
    layers = _first(config, ("n_layers", "num_hidden_layers", "n_layer"))
    if layers is None:
        raise ValueError(f"cannot find the number of layers in config {type(config).__name__}")
    mlp = _first(config, ("mlp_hidden_size", "intermediate_size", "n_inner"))
    if mlp is None:
        mlp = int(getattr(config, "mlp_ratio", 4) * width)
    vocab = _first(config, ("embedding_size", "vocab_size"))
    if vocab is None:
        raise ValueError(f"cannot find the vocabulary size in config {type(config).__name__}")
    kv_heads = _first(config, ("n_kv_heads", "num_key_value_heads")) or 0
    return Shape(width, layers, backbone_heads(config), mlp, vocab, kv_heads)


def _module_features(shape: Shape) -> dict[str, tuple[int, int]]:
    """(in, out) features of the blocks' linear modules by name (LLaDA's and Dream's names)."""
    D, Dkv, F = shape.width, shape.kv_width, shape.mlp_hidden
    return {"q_proj": (D, D), "k_proj": (D, Dkv), "v_proj": (D, Dkv), "attn_out": (D, D), "o_proj": (D, D),
            "ff_proj": (D, F), "gate_proj": (D, F), "up_proj": (D, F), "ff_out": (F, D), "down_proj": (F, D)}


def lora_parameters(shape: Shape, rank: int, modules: Iterable[str] = LLADA_LORA_MODULES) -> int:
    """Adapter parameters of rank `rank` on `modules` in every block: rank x (in + out) each (A and B)."""
    features = _module_features(shape)
    unknown = sorted(set(modules) - set(features))
    if unknown:
        raise ValueError(f"unknown LoRA modules {unknown}; known: {', '.join(features)}")
    return shape.layers * sum(rank * sum(features[name]) for name in modules)


def lora_activation_values(shape: Shape, rank: int, modules: Iterable[str] = LLADA_LORA_MODULES,
                           dropout: bool = True) -> tuple[int, int]:
    """(values per token and layer kept at the compute dtype, dropout-mask bytes per token and layer) of
    the adapters on `modules`: rank each, plus each input's dropped copy (and its mask) with dropout."""
    features = _module_features(shape)
    inputs = sum(features[name][0] for name in modules) if dropout else 0
    return rank * len(tuple(modules)) + inputs, inputs


def adapter_activation_values(model: Any, layers: int) -> tuple[int, int]:
    """`lora_activation_values` counted on a peft model's trainable adapters (duck-typed on peft's
    LoraLayer: `lora_A`, `lora_dropout`, `r`, `in_features`), averaged over `layers` blocks."""
    values, masks = 0, 0
    for module in model.modules():
        lora_a = getattr(module, "lora_A", None)
        if not lora_a or not hasattr(module, "in_features"):
            continue
        for name, a in lora_a.items():
            if not a.weight.requires_grad:  # a frozen adapter (e.g. an EMA copy) keeps nothing for backward
                continue
            values += module.r[name]
            if getattr(module.lora_dropout[name], "p", 0.0) > 0:
                values += module.in_features
                masks += module.in_features
    return values // max(layers, 1), masks // max(layers, 1)


def predictor_parameters(width: int, depth: int, mlp_ratio: float = 4.0) -> int:
    """Parameters of `jepa.Predictor`: per layer attention (4 D^2 + 4 D), MLP (2 D H + H + D), two
    LayerNorms (4 D); then a final LayerNorm (2 D). 0 at depth 0 (the identity)."""
    if depth == 0:
        return 0
    D, H = width, round(width * mlp_ratio)
    return depth * (4 * D * D + 4 * D + 2 * D * H + H + D + 4 * D) + 2 * D


def zero_bucket_elements(zero_optimization: dict) -> int:
    """Elements of ZeRO-1/2's contiguous-gradient buffers under a DeepSpeed `zero_optimization` block."""
    if not zero_optimization.get("contiguous_gradients", True):
        return 0
    buffers = 2 if zero_optimization.get("overlap_comm", False) else 1
    return buffers * int(zero_optimization.get("reduce_bucket_size", REDUCE_BUCKET_SIZE))


def memory_estimate(
    *, num_trainable: int, num_frozen: int = 0, engine: str = "deepspeed", zero_stage: int = 2, world_size: int = 1,
    weight_bytes: int = 2, frozen_bytes: int | None = None, compute_bytes: int = 2, num_ema: int = 0,
    ema_shadow: bool = True, num_anchor: int = 0, bucket_elements: int = 2 * REDUCE_BUCKET_SIZE,
    shape: Shape | None = None, micro_batch: int = 0, length: int = 0, checkpointing: bool = True,
    masked_fraction: float = 0.2, use_jepa: bool = False, adapter_values: tuple[int, int] = (0, 0),
    shifted_logits: bool = False, target_has_head: bool = False,
) -> dict[str, float]:
    """Per-rank GB of each part (module docstring) and their "total".

    Counts: `num_trainable` (backbone or adapters, plus the predictor), `num_frozen` (LoRA's base),
    `num_ema` (parameters the EMA follows; 0 for the baseline), `num_anchor` (0: no anchor);
    `bucket_elements`: `zero_bucket_elements` (default: our DeepSpeed JSON's, 2 x 5e8). Without
    `shape` (or with micro_batch 0) the activation parts are 0. `adapter_values`: per token and layer,
    the adapters' saved values and dropout-mask bytes (`lora_activation_values`).
    """
    if engine not in ("deepspeed", "torch"):
        raise ValueError(f"engine must be deepspeed or torch, got {engine!r}")
    frozen_bytes = weight_bytes if frozen_bytes is None else frozen_bytes
    is_deepspeed = engine == "deepspeed"
    optim_shards = world_size if is_deepspeed and zero_stage >= 1 else 1
    grad_shards = world_size if is_deepspeed and zero_stage >= 2 else 1
    if is_deepspeed:
        master = 4 if weight_bytes != 4 else 0
        optimizer = (master + 8) * num_trainable / optim_shards
    else:
        optimizer = 2 * weight_bytes * num_trainable
    has_shadow = ema_shadow and compute_bytes < 4
    out = {
        "weights_trainable": weight_bytes * num_trainable,
        "weights_frozen": frozen_bytes * num_frozen,
        "gradients": weight_bytes * num_trainable / grad_shards,
        "optimizer": optimizer,
        "ema": (4 + (compute_bytes if has_shadow else 0)) * num_ema,
        "anchor_base": weight_bytes * num_anchor,
        "zero_buckets": bucket_elements * weight_bytes if is_deepspeed and zero_stage >= 1 else 0,
        "activations": 0.0, "logits": 0.0, "target_forward": 0.0,
    }
    if shape is not None and micro_batch > 0:
        tokens = micro_batch * length
        adapter_bytes = adapter_values[0] * compute_bytes + adapter_values[1]
        one_layer = tokens * (shape.layer_values() * compute_bytes + adapter_bytes)
        if checkpointing:
            out["activations"] = shape.layers * tokens * shape.width * compute_bytes + one_layer
        else:
            out["activations"] = shape.layers * one_layer
        logits = tokens * shape.vocab * compute_bytes * (2 if shifted_logits else 1)
        out["logits"] = logits + 8 * masked_fraction * tokens * shape.vocab
        if use_jepa:
            hidden = (shape.layers + 1) * tokens * shape.width * compute_bytes
            head = tokens * shape.vocab * compute_bytes if target_has_head else 0
            out["target_forward"] = hidden + tokens * shape.layer_values() * compute_bytes + head
    gb = {name: value / GB for name, value in out.items()}
    gb["total"] = sum(gb.values())
    return gb


def shape_estimate(
    shape: Shape, *, lora_rank: int = 0, lora_modules: Sequence[str] = LLADA_LORA_MODULES, lora_dropout: bool = True,
    use_jepa: bool = False, predictor_depth: int = 0, predictor_mlp_ratio: float = 4.0, world_size: int = 1,
    zero_stage: int = 2, micro_batch: int = 2, length: int = 512, checkpointing: bool = True,
    masked_fraction: float = 0.2,
) -> dict[str, float]:
    """`memory_estimate` of a DeepSpeed bf16 run on `shape` (untied head, EMA shadow on, no anchor):
    full fine-tuning at lora_rank 0, else rank-`lora_rank` adapters on `lora_modules` over a frozen base."""
    num_backbone = shape.num_parameters()
    num_predictor = predictor_parameters(shape.width, predictor_depth, predictor_mlp_ratio) if use_jepa else 0
    if lora_rank:
        num_adapters = lora_parameters(shape, lora_rank, lora_modules)
        trainable, frozen, ema = num_adapters, num_backbone, num_adapters
        adapter_values = lora_activation_values(shape, lora_rank, lora_modules, lora_dropout)
    else:
        trainable, frozen, ema = num_backbone, 0, num_backbone - shape.vocab * shape.width  # EMA: no head
        adapter_values = (0, 0)
    return memory_estimate(
        num_trainable=trainable + num_predictor, num_frozen=frozen, engine="deepspeed", zero_stage=zero_stage,
        world_size=world_size, num_ema=ema if use_jepa else 0, shape=shape, micro_batch=micro_batch, length=length,
        checkpointing=checkpointing, masked_fraction=masked_fraction, use_jepa=use_jepa,
        adapter_values=adapter_values, target_has_head=bool(lora_rank),
    )


def llada_8b_table(predictor_depth: int = 3, lora_rank: int = 16, micro_batch: int = 2, length: int = 512) -> str:
    """The docs' markdown table: LLaDA-8B, bf16 DeepSpeed ZeRO-2, checkpointing on, 1 and 8 GPUs."""
    parts = {"weights_trainable": "trainable weights", "weights_frozen": "frozen weights", "gradients": "grads",
             "optimizer": "optimizer", "ema": "EMA", "zero_buckets": "ZeRO buckets", "activations": "layer acts",
             "logits": "logits + CE", "target_forward": "target fwd"}
    lines = ["| run | GPUs | " + " | ".join(parts.values()) + " | total GB |",
             "|---|---|" + "---|" * (len(parts) + 1)]
    for name, rank in (("full fine-tuning", 0), (f"LoRA r {lora_rank}", lora_rank)):
        for method, use_jepa in (("baseline", False), (f"JEPA k {predictor_depth}", True)):
            for world in (1, 8):
                est = shape_estimate(LLADA_8B, lora_rank=rank, use_jepa=use_jepa, predictor_depth=predictor_depth,
                                     world_size=world, micro_batch=micro_batch, length=length)
                cells = " | ".join(f"{est[p]:.2f}" for p in parts)
                lines.append(f"| {name}, {method} | {world} | {cells} | **{est['total']:.1f}** |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="the LLaDA-8B memory table of docs/training.md")
    parser.add_argument("--predictor-depth", type=int, default=3)
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=512)
    args = parser.parse_args(argv)
    print(f"LLaDA-8B ({LLADA_8B.num_parameters():,} parameters; LoRA r {args.lora_rank} on "
          f"{' '.join(LLADA_LORA_MODULES)}: {lora_parameters(LLADA_8B, args.lora_rank):,}; predictor depth "
          f"{args.predictor_depth}: {predictor_parameters(LLADA_8B.width, args.predictor_depth):,}), bf16 DeepSpeed "
          f"ZeRO-2, micro-batch {args.micro_batch} x {args.length} tokens, gradient checkpointing on, 20% of "
          "positions masked; GB per rank")
    print(llada_8b_table(args.predictor_depth, args.lora_rank, args.micro_batch, args.length))


if __name__ == "__main__":
    main()


def estimate_for_run(cfg: Any, online: Any, target: Any, anchor: bool, spec: Any, checkpointing: bool,
                     world_size: int, compute_dtype: Any) -> dict[str, float]:
    """`memory_estimate` for a trainer about to run: `online` the OnlineModel (backbone, a peft model under
    LoRA, + predictor), `target` its EMA target or None, `anchor` whether the L2 anchor is on."""
    import torch

    from dllm_jepa_train.engines import deepspeed_config

    backbone = online.backbone
    trainable = [p for p in online.parameters() if p.requires_grad]
    frozen = [p for p in online.parameters() if not p.requires_grad]
    weight_bytes = trainable[0].element_size() if trainable else 4
    is_lora = cfg.lora.enabled
    base = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone  # peft: the base
    shape = backbone_shape(base.config)
    buckets = (zero_bucket_elements(deepspeed_config(cfg)["zero_optimization"]) if cfg.run.engine == "deepspeed"
               else 0)
    return memory_estimate(
        num_trainable=sum(p.numel() for p in trainable), num_frozen=sum(p.numel() for p in frozen),
        engine=cfg.run.engine, zero_stage=cfg.run.zero_stage, world_size=world_size,
        weight_bytes=weight_bytes, frozen_bytes=frozen[0].element_size() if frozen else None,
        compute_bytes=torch.finfo(compute_dtype).bits // 8, num_ema=target.num_parameters() if target else 0,
        # EmaTarget keeps a compute-dtype shadow under bf16 compute; the adapters' EMA whenever they are bf16.
        ema_shadow=weight_bytes < 4 if is_lora else cfg.jepa.ema_shadow,
        num_anchor=sum(p.numel() for p in backbone.parameters() if p.requires_grad) if anchor else 0,
        bucket_elements=buckets, shape=shape, micro_batch=cfg.optim.micro_batch_size, length=cfg.data.max_length,
        checkpointing=checkpointing, masked_fraction=cfg.diffusion.t_context[1], use_jepa=target is not None,
        adapter_values=adapter_activation_values(backbone, shape.layers), shifted_logits=spec.shift_logits,
        target_has_head=bool(getattr(target, "has_head", False)),
    )
