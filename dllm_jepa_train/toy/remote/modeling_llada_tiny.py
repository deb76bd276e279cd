"""Tiny LLaDA-like model: LLaDA's interface (LLaDAModelLM, `.model.set_activation_checkpointing`,
unshifted logits, no position_ids argument) on a 2-layer bidirectional transformer."""

from __future__ import annotations

import enum

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_llada_tiny import LLaDAConfig
from .tiny_blocks import Encoder, key_mask


class ActivationCheckpointingStrategy(enum.Enum):
    whole_layer = "whole_layer"


class LLaDAModel(nn.Module):
    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__()
        self.encoder = Encoder(config.vocab_size, config.d_model, config.n_layers, config.n_heads,
                               getattr(config, "mlp_hidden_size", None))
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)

    def set_activation_checkpointing(self, strategy: ActivationCheckpointingStrategy | None) -> None:
        self.encoder.use_checkpointing = strategy is not None


class LLaDAModelLM(PreTrainedModel):
    config_class = LLaDAConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False

    def __init__(self, config: LLaDAConfig) -> None:
        super().__init__(config)
        self.model = LLaDAModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.encoder.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.model.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        use_cache: bool | None = None,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        if use_cache:
            raise ValueError("this model has no KV cache; pass use_cache=False")
        B, L = input_ids.shape
        positions = torch.arange(L, device=input_ids.device).expand(B, L)
        mask = key_mask(attention_mask) if self.config.honour_attention_mask else None
        x, hidden = self.model.encoder(input_ids, positions, mask)
        logits = self.model.lm_head(x)
        return CausalLMOutputWithPast(logits=logits, hidden_states=hidden if output_hidden_states else None)
