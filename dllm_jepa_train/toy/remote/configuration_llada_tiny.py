"""Config of the tiny LLaDA-like test model: same model type and mask-id field as LLaDA's own config."""

from transformers import PretrainedConfig


class LLaDAConfig(PretrainedConfig):
    model_type = "llada"

    def __init__(
        self,
        vocab_size: int = 512,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        mask_token_id: int = 0,
        eos_token_id: int = 1,
        pad_token_id: int = 1,
        use_cache: bool = False,
        honour_attention_mask: bool = True,
        mlp_hidden_size: int | None = None,
        **kwargs,
    ) -> None:
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.hidden_size = d_model
        self.n_layers = n_layers
        self.num_hidden_layers = n_layers
        self.n_heads = n_heads
        self.mask_token_id = mask_token_id
        self.use_cache = use_cache
        # False makes the model ignore padding, as some remote-code models do (tests the fallback).
        self.honour_attention_mask = honour_attention_mask
        # An int builds LLaDA-8B's block (SwiGLU of this width, RMSNorm, no biases; LLaDA's own config calls
        # it block_type "llama"); the benchmarks' 8B shape. Stored only when given, so that the tiny
        # checkpoints' config.json stay byte-identical to those written before the option existed.
        if mlp_hidden_size is not None:
            self.mlp_hidden_size = mlp_hidden_size
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(eos_token_id=eos_token_id, pad_token_id=pad_token_id, **kwargs)
