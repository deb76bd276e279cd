"""Tiny tokenizers and checkpoints built offline: the test fixtures and the demo's base model; and the
tiny LLaDA-like model in LLaDA-8B's shape with random weights for the GPU benchmarks (`build_llada_shaped`).

Every checkpoint is written with `save_pretrained` (and, for the LLaDA-like and Dream-like families,
with its remote-code files and `auto_map`), so it goes through the same loading path as a real one.
`TINY_MODELS` says, per family of the registry (`lm_eval_diffusion.families`), how the toy builds one
that the registry recognises as that family; the registry knows nothing of the toy. Imports no torch
at module level (the toy's names, `dllm_jepa_train.toy.TOY_MODELS`, come from here).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

REMOTE_CODE_DIR = Path(__file__).resolve().parent / "remote"

# Special tokens named as in the real checkpoints' tokenizers; ids are whatever the trainer assigns.
EOS_TOKEN = "<|endoftext|>"
EOT_TOKEN = "<|eot_id|>"
MASK_TOKEN = "<|mdm_mask|>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (EOS_TOKEN, EOT_TOKEN, MASK_TOKEN, UNK_TOKEN)


@dataclass(frozen=True)
class TinyRemote:
    """A tiny remote-code model: what its checkpoint folder holds and its config calls its sizes."""

    model_type: str  # written into config.json; the registry detects the family from it
    files: tuple[str, ...]  # copied from REMOTE_CODE_DIR beside the weights
    auto_map: dict[str, str]
    size_keys: tuple[str, str, str]  # the config's names for hidden size, layers, heads
    padding_switch: str | None = None  # config key that makes the model ignore the attention mask (tests)


# Registry family -> how the toy builds it; None: a native transformers BERT (AutoModelForMaskedLM).
TINY_MODELS: dict[str, TinyRemote | None] = {
    "llada": TinyRemote(
        model_type="llada",
        files=("configuration_llada_tiny.py", "modeling_llada_tiny.py", "tiny_blocks.py"),
        auto_map={"AutoConfig": "configuration_llada_tiny.LLaDAConfig",
                  "AutoModel": "modeling_llada_tiny.LLaDAModelLM"},
        size_keys=("d_model", "n_layers", "n_heads"),
        padding_switch="honour_attention_mask",
    ),
    "dream": TinyRemote(
        model_type="Dream",
        files=("configuration_dream_tiny.py", "modeling_dream_tiny.py", "tiny_blocks.py"),
        auto_map={"AutoConfig": "configuration_dream_tiny.DreamConfig",
                  "AutoModel": "modeling_dream_tiny.DreamModel"},
        size_keys=("hidden_size", "num_hidden_layers", "num_attention_heads"),
    ),
    "generic": None,
}

# Where LoRA goes in the tiny models (toy/remote/tiny_blocks.py): their blocks are `...blocks.<i>` in both
# families and hold `qkv`, `proj` and the MLP's `mlp.0` / `mlp.2` (the LLaDA-8B-shaped benchmark variant:
# `mlp.ff_proj`, `mlp.up_proj`, `mlp.ff_out`, names LLaDA's entry already has). `toy.register` adds these
# to the registry's llada and dream entries; none of them names a module of the real LLaDA or Dream.
TINY_LORA_BLOCKS = r"(?:.*\.)?blocks\.\d+"
TINY_LORA_TARGETS = ("qkv", "proj", "mlp.0", "mlp.2", "ff_proj", "up_proj", "ff_out")

# LLaDA-8B's shape, as its config.json gives it (block_type "llama": SwiGLU MLP, RMSNorm, no biases).
# The GPU benchmarks build the tiny LLaDA-like model in it with random weights: ~8.0B parameters.
LLADA_8B_SHAPE = {"d_model": 4096, "n_layers": 32, "n_heads": 32, "mlp_hidden_size": 12288, "vocab_size": 126464}

DEFAULT_CORPUS = (
    "Question: Tom has 3 apples and buys 4 more. How many apples does he have?\n"
    "Answer: Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    "SELECT count(*) FROM singer WHERE age > 20",
    "lines containing the word dog followed by a number",
    "(.*[0-9].*)&(.*[a-z].*)",
    "call the function foo with an argument bar, substitute the result for baz.",
    "baz = foo ( bar )",
    "The quick brown fox jumps over the lazy dog. 0123456789",
)


def build_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 384):
    """Train a byte-level BPE tokenizer on `corpus` (lossless round trip of any text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        mask_token=MASK_TOKEN,
        unk_token=UNK_TOKEN,
        additional_special_tokens=[EOT_TOKEN],
        model_max_length=4096,
    )


def build_tiny_checkpoint(
    out_dir: str | Path,
    family: str = "generic",
    tokenizer=None,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    seed: int = 0,
    honour_attention_mask: bool = True,
) -> Path:
    """Write a randomly initialised tiny checkpoint of `family` (a key of TINY_MODELS) to `out_dir`.

    `honour_attention_mask=False` builds a model that ignores padding, where the family's tiny model has
    that switch (LLaDA-like only).
    """
    import torch
    from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM

    if family not in TINY_MODELS:
        raise ValueError(f"family must be one of {', '.join(TINY_MODELS)}; got {family!r}")
    remote = TINY_MODELS[family]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    if remote is None:
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=4 * hidden_size,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        model = BertForMaskedLM(config)
    else:
        for name in remote.files:
            shutil.copyfile(REMOTE_CODE_DIR / name, out / name)
        ids = {
            "mask_token_id": tokenizer.mask_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        sizes = dict(zip(remote.size_keys, (hidden_size, num_layers, num_heads)))
        if remote.padding_switch is not None:
            sizes[remote.padding_switch] = honour_attention_mask
        raw = {"model_type": remote.model_type, "vocab_size": vocab_size, "auto_map": remote.auto_map, **ids, **sizes}
        (out / "config.json").write_text(json.dumps(raw, indent=2))
        config = AutoConfig.from_pretrained(out, trust_remote_code=True)
        model = AutoModel.from_config(config, trust_remote_code=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if remote is not None:
        # save_pretrained rewrites config.json; keep auto_map and the code files beside the weights.
        saved = json.loads((out / "config.json").read_text())
        saved["auto_map"] = remote.auto_map
        (out / "config.json").write_text(json.dumps(saved, indent=2))
        for name in remote.files:
            if not (out / name).exists():
                shutil.copyfile(REMOTE_CODE_DIR / name, out / name)
    return out


def build_llada_shaped(device="cpu", dtype=None, **config):
    """A random tiny-LLaDA-like model (`LLaDAModelLM`) in LLaDA-8B's shape, created on `device` directly in
    `dtype` (no fp32 copy first: 8B fp32 weights are 32 GB). `config`: LLaDAConfig keys that replace the
    shape's or add to it, e.g. `n_layers=24`; special ids default to the last two of the vocabulary
    (mask: last; EOS and padding: second to last)."""
    import torch

    from dllm_jepa_train.toy.remote.configuration_llada_tiny import LLaDAConfig
    from dllm_jepa_train.toy.remote.modeling_llada_tiny import LLaDAModelLM

    values = {**LLADA_8B_SHAPE, **config}
    vocab = values["vocab_size"]
    values = {"mask_token_id": vocab - 1, "eos_token_id": vocab - 2, "pad_token_id": vocab - 2, **values}
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype or previous)
    try:
        with torch.device(device):
            return LLaDAModelLM(LLaDAConfig(**values))
    finally:
        torch.set_default_dtype(previous)
