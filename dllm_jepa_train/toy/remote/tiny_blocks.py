"""A small bidirectional transformer shared by the tiny LLaDA-like and Dream-like test models.

Shipped as remote code next to each tiny checkpoint, so it depends on torch alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, L, Dh) by positions (B, L); relative positions alone then set the scores."""
    half = x.shape[-1] // 2
    freqs = 1.0 / (10000 ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
    angles = positions.to(torch.float32)[:, None, :, None] * freqs
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class SwiGLU(nn.Module):
    """LLaDA's MLP: ff_out(silu(ff_proj(x)) * up_proj(x)), bias-free."""

    def __init__(self, d_model: int, hidden_size: int) -> None:
        super().__init__()
        self.ff_proj = nn.Linear(d_model, hidden_size, bias=False)
        self.up_proj = nn.Linear(d_model, hidden_size, bias=False)
        self.ff_out = nn.Linear(hidden_size, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ff_out(F.silu(self.ff_proj(x)) * self.up_proj(x))


def norm_layer(d_model: int, is_llada_block: bool) -> nn.Module:
    return nn.RMSNorm(d_model, eps=1e-5) if is_llada_block else nn.LayerNorm(d_model)


class Block(nn.Module):
    """Pre-norm attention + MLP. `mlp_hidden_size=None`: the tiny block (LayerNorm, biased projections,
    4x GELU MLP); an int: LLaDA-8B's block at that MLP width (RMSNorm, bias-free projections, SwiGLU),
    so a forward costs what LLaDA's does (the benchmarks' 8B shape)."""

    def __init__(self, d_model: int, n_heads: int, mlp_hidden_size: int | None = None) -> None:
        super().__init__()
        is_llada_block = mlp_hidden_size is not None
        self.n_heads = n_heads
        self.norm1 = norm_layer(d_model, is_llada_block)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=not is_llada_block)
        self.proj = nn.Linear(d_model, d_model, bias=not is_llada_block)
        self.norm2 = norm_layer(d_model, is_llada_block)
        if is_llada_block:
            self.mlp = SwiGLU(d_model, mlp_hidden_size)
        else:
            self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        q, k = rotary(q, positions), rotary(k, positions)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)
        x = x + self.proj(att.transpose(1, 2).reshape(B, L, D))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    """Embedding, blocks, final norm; returns every layer's hidden state like HF models do.
    `mlp_hidden_size`: see `Block` (None, the default, builds the tiny blocks)."""

    def __init__(
        self, vocab_size: int, d_model: int, n_layers: int, n_heads: int, mlp_hidden_size: int | None = None
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_hidden_size) for _ in range(n_layers))
        self.norm = norm_layer(d_model, mlp_hidden_size is not None)
        self.use_checkpointing = False
        nn.init.normal_(self.embed.weight, std=1.0 / math.sqrt(d_model))

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        attn_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        x = self.embed(input_ids)
        hidden = [x]
        for block in self.blocks:
            if self.use_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, positions, attn_mask, use_reentrant=False)
            else:
                x = block(x, positions, attn_mask)
            hidden.append(x)
        x = self.norm(x)
        hidden[-1] = x
        return x, tuple(hidden)


def key_mask(attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """(B, L) 0/1 padding mask -> (B, 1, 1, L) bool mask of keys that may be attended to."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        return attention_mask.bool()
    return attention_mask.bool()[:, None, None, :]
