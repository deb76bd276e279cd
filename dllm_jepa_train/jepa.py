"""The JEPA parts: the predictor, the EMA target encoder, and the online module that DeepSpeed wraps.

EMA precision and memory (per parameter of the backbone, head excluded):
- The EMA master weights are fp32 (4 B). With decay 0.996 a bf16 EMA would never move: the step
  (1 - d) * (online - ema) is far below half a bf16 ulp of the weight for fine-tuning learning rates.
- With bf16 compute and `ema_shadow` (default), a bf16 copy of the EMA runs the target forward
  (+2 B, refreshed after each update): no cast per forward. Without it, the fp32 EMA runs under
  autocast, which re-casts every weight on each target forward (6 B of memory traffic per parameter
  per forward) but saves the 2 B. For an 8B model: 32 GB fp32 EMA, +16 GB shadow.
- The EMA never holds the output head: the target only needs the last hidden state, so its head is
  replaced by `NoHead` (for LLaDA-8B that skips a 126,464 x 4,096 matmul per target forward and
  2 GB of fp32 EMA). Where the head cannot be removed (tied to the input embedding) it stays.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

from dllm_jepa_train.objectives import pool_embeddings
from lm_eval_diffusion.backbone import FamilySpec, model_forward

log = logging.getLogger(__name__)


def backbone_width(config: Any) -> int:
    """Hidden width of a HF config (hidden_size, d_model or n_embd)."""
    for name in ("hidden_size", "d_model", "n_embd"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot find the hidden width in config {type(config).__name__}")


def backbone_heads(config: Any) -> int:
    """Attention heads of a HF config (num_attention_heads or n_heads)."""
    for name in ("num_attention_heads", "n_heads", "n_head"):
        value = getattr(config, name, None)
        if value:
            return int(value)
    raise ValueError(f"cannot find the number of attention heads in config {type(config).__name__}")


class Predictor(nn.Module):
    """k pre-norm transformer layers at backbone width on a length-1 sequence: (B, D) -> (B, D)."""

    def __init__(self, width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model=width,
                nhead=heads,
                dim_feedforward=round(width * mlp_ratio),
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.unsqueeze(1)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x).squeeze(1)


class IdentityPredictor(nn.Module):
    """k = 0 (the Figure 3 "no predictor" ablation): the prediction is z_L itself, no parameters, so the
    JEPA loss is the plain stop-gradient two-view cosine 1 - cos(z_L, z_H)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


def build_predictor(width: int, depth: int, heads: int, mlp_ratio: float = 4.0) -> nn.Module:
    """`Predictor` with `depth` layers, or `IdentityPredictor` at depth 0."""
    return IdentityPredictor() if depth == 0 else Predictor(width, depth, heads, mlp_ratio)


class OnlineModel(nn.Module):
    """The online backbone and the predictor in one module, so DeepSpeed shards and steps both."""

    def __init__(self, backbone: nn.Module, spec: FamilySpec, predictor: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.predictor = predictor
        self.spec = spec

    def forward(
        self, noisy_ids: torch.Tensor, keep: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(B, L) long ids, (B, L) bool keep -> aligned logits (B, L, V), z_L (B, D) fp32, prediction (B, D) fp32.

        Without a predictor (lambda = 0) no hidden states are requested and z_L and prediction are None.
        """
        need_hidden = self.predictor is not None
        logits, hidden = model_forward(self.backbone, self.spec, noisy_ids, attention_mask, need_hidden)
        if not need_hidden:
            return logits, None, None
        z_context = pool_embeddings(hidden[-1], keep)
        weight = next(self.predictor.parameters(), None)  # None: the identity predictor
        z_in = z_context.to(weight.dtype) if weight is not None else z_context
        return logits, z_context, self.predictor(z_in).float()


class NoHead(nn.Module):
    """Stands in for the output head of the target: (B, L, D) -> (B, L, 0) "logits", no compute.

    Not an identity: a model that post-processes its logits in place (e.g. LLaDA's optional
    `scale_logits`) would then rewrite the last hidden state that the target pools.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_empty(*x.shape[:-1], 0)


def _drop_output_head(model: nn.Module) -> bool:
    """Replace the output head by `NoHead` (the target needs hidden states only); False if tied."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None or head is model.get_input_embeddings():
        return False
    if getattr(head, "weight", None) is not None and head.weight is model.get_input_embeddings().weight:
        return False
    for name, module in model.named_modules():
        if module is head:
            parent_name, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, attr, NoHead())
            return True
    return False


class EmaTarget:
    """The EMA copy of the online backbone: fp32 master weights, no gradients, no output head.

    `update` runs once per optimizer step: ema <- decay * ema + (1 - decay) * online, as one
    `_foreach_mul_` and one `_foreach_add_` over flat parameter lists. `encode` runs the target forward
    in `compute_dtype` (see the module docstring for the shadow copy and its memory cost).
    """

    def __init__(
        self, online: nn.Module, spec: FamilySpec, decay: float, compute_dtype: torch.dtype, shadow: bool = True
    ) -> None:
        self.spec = spec
        self.decay = decay
        self.compute_dtype = compute_dtype
        model = copy.deepcopy(online)
        model.eval()
        self.has_head = not _drop_output_head(model)
        if self.has_head:
            log.warning("the output head is tied to the input embedding; the target forward computes it too")
        model.requires_grad_(False)
        self.names = [name for name, _ in model.named_parameters()]
        online_params = dict(online.named_parameters())
        self.online_params = [online_params[name] for name in self.names]
        use_shadow = shadow and compute_dtype != torch.float32
        if use_shadow:
            self.master = [p.detach().float().clone() for p in model.parameters()]
            self.model = model.to(compute_dtype)
            self.shadow = list(self.model.parameters())
        else:
            self.model = model.float()
            self.master = list(self.model.parameters())
            self.shadow = None
        self.autocast = compute_dtype != torch.float32 and not use_shadow

    def parameters(self) -> list[torch.Tensor]:
        """The fp32 master weights, in `names` order."""
        return self.master

    @torch.no_grad()
    def update(self) -> None:
        """ema <- decay * ema + (1 - decay) * online (fp32; online weights of any dtype)."""
        torch._foreach_mul_(self.master, self.decay)
        torch._foreach_add_(self.master, [p.detach() for p in self.online_params], alpha=1.0 - self.decay)
        if self.shadow is not None:
            torch._foreach_copy_(self.shadow, self.master)

    @torch.no_grad()
    def encode(
        self, noisy_ids: torch.Tensor, keep: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """z_H: (B, L) long ids, (B, L) bool keep -> (B, D) fp32 pooled, LayerNormed last hidden state."""
        device_type = noisy_ids.device.type
        with torch.autocast(device_type, dtype=self.compute_dtype, enabled=self.autocast):
            _, hidden = model_forward(self.model, self.spec, noisy_ids, attention_mask, output_hidden_states=True)
        return pool_embeddings(hidden[-1], keep)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """{parameter name: fp32 master weight} (head excluded unless tied)."""
        return {name: p.detach() for name, p in zip(self.names, self.master)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy `state` (from `state_dict`) into the master weights and the shadow."""
        missing = [n for n in self.names if n not in state]
        if missing:
            raise KeyError(f"EMA state lacks {len(missing)} parameters, e.g. {missing[:3]}")
        for name, p in zip(self.names, self.master):
            p.copy_(state[name])
        if self.shadow is not None:
            torch._foreach_copy_(self.shadow, self.master)

    def num_parameters(self) -> int:
        """Parameters held by the EMA (the backbone's, less a removed head)."""
        return sum(p.numel() for p in self.master)
