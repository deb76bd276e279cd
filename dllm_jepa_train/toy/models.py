"""Tiny tokenizers and checkpoints built offline: the test fixtures and the demo's base model.

Every checkpoint is written with `save_pretrained` (and, for the LLaDA-like and Dream-like families,
with its remote-code files and `auto_map`), so it goes through the same loading path as a real one.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

import torch

REMOTE_CODE_DIR = Path(__file__).resolve().parent / "remote"

# Special tokens named as in the real checkpoints' tokenizers; ids are whatever the trainer assigns.
EOS_TOKEN = "<|endoftext|>"
EOT_TOKEN = "<|eot_id|>"
MASK_TOKEN = "<|mdm_mask|>"
UNK_TOKEN = "<unk>"
SPECIAL_TOKENS = (EOS_TOKEN, EOT_TOKEN, MASK_TOKEN, UNK_TOKEN)

_REMOTE = {
    "llada": {
        "files": ("configuration_llada_tiny.py", "modeling_llada_tiny.py", "tiny_blocks.py"),
        "auto_map": {
            "AutoConfig": "configuration_llada_tiny.LLaDAConfig",
            "AutoModel": "modeling_llada_tiny.LLaDAModelLM",
        },
    },
    "dream": {
        "files": ("configuration_dream_tiny.py", "modeling_dream_tiny.py", "tiny_blocks.py"),
        "auto_map": {
            "AutoConfig": "configuration_dream_tiny.DreamConfig",
            "AutoModel": "modeling_dream_tiny.DreamModel",
        },
    },
}

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
    """Write a randomly initialised tiny checkpoint of `family` (generic | llada | dream) to `out_dir`."""
    from transformers import AutoConfig, AutoModel, BertConfig, BertForMaskedLM

    if family not in ("generic", "llada", "dream"):
        raise ValueError(f"family must be one of generic, llada, dream; got {family!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else build_tokenizer()
    vocab_size = len(tokenizer)
    torch.manual_seed(seed)
    if family == "generic":
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
        spec = _REMOTE[family]
        for name in spec["files"]:
            shutil.copyfile(REMOTE_CODE_DIR / name, out / name)
        ids = {
            "mask_token_id": tokenizer.mask_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if family == "llada":
            sizes = {"d_model": hidden_size, "n_layers": num_layers, "n_heads": num_heads,
                     "honour_attention_mask": honour_attention_mask}
            model_type = "llada"
        else:
            sizes = {"hidden_size": hidden_size, "num_hidden_layers": num_layers,
                     "num_attention_heads": num_heads}
            model_type = "Dream"
        raw = {"model_type": model_type, "vocab_size": vocab_size, "auto_map": spec["auto_map"], **ids, **sizes}
        (out / "config.json").write_text(json.dumps(raw, indent=2))
        config = AutoConfig.from_pretrained(out, trust_remote_code=True)
        model = AutoModel.from_config(config, trust_remote_code=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if family != "generic":
        # save_pretrained rewrites config.json; keep auto_map and the code files beside the weights.
        saved = json.loads((out / "config.json").read_text())
        saved["auto_map"] = spec["auto_map"]
        (out / "config.json").write_text(json.dumps(saved, indent=2))
        for name in spec["files"]:
            if not (out / name).exists():
                shutil.copyfile(REMOTE_CODE_DIR / name, out / name)
    return out
