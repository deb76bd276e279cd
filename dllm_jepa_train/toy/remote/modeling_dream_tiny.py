"""Tiny Dream-like model: Dream's interface (DreamModel, position_ids, 2-D/4-D/"full" attention
masks, HF gradient checkpointing) and its right-shifted logits: position i predicts token i + 1."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_dream_tiny import DreamConfig
from .tiny_blocks import Encoder, key_mask


class DreamModel(PreTrainedModel):
    config_class = DreamConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True

    def __init__(self, config: DreamConfig) -> None:
        super().__init__(config)
        self.model = Encoder(
            config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads
        )
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def _set_gradient_checkpointing(self, enable: bool = True, gradient_checkpointing_func=None) -> None:
        self.model.use_checkpointing = enable

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | str | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MaskedLMOutput:
        B, L = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(L, device=input_ids.device).expand(B, L)
        mask = None if isinstance(attention_mask, str) else key_mask(attention_mask)
        x, hidden = self.model(input_ids, position_ids, mask)
        logits = self.lm_head(x)
        return MaskedLMOutput(logits=logits, hidden_states=hidden if output_hidden_states else None)
