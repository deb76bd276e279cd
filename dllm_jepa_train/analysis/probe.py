"""Held-out diffusion-loss probe: functional forgetting as the loss change of a fine-tune against its base.

Every model sees the same documents with the same masks: document i is masked by a generator seeded
by (seed, i), never by its batch, so the loss does not depend on --batch-size or on the model. Each
document is tokenized without special tokens and truncated to its first --max-length tokens (the rest
of a long document is not scored); exactly round(mask_rate * n) of its n maskable tokens are masked.
Every token is maskable except, for a model with shifted logits (Dream: the logit at i predicts
token i + 1), the first: no logit predicts position 0, and the one found there predicts token 1.

    loss = sum over documents of CE at masked positions / total masked positions   (divided once)
    delta = loss(fine-tune) - loss(base)                                           (> 0: forgetting)

Smallest CPU run (a tiny checkpoint from `dllm_jepa_train.toy.models`, any text file):

    python -m dllm_jepa_train.analysis probe --base /tmp/tiny --finetunes /tmp/tiny \
        --text-file /tmp/synthetic_data/text/valid.txt --num-docs 8 --out /tmp/probe.json
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import (
    check_same_tokenizer,
    checkpoint_label,
    finite,
    load_documents,
    load_model,
    pad_rows,
    plan_batches,
    release,
    tokenize_documents,
)


@dataclass
class ProbeSettings:
    """What fixes the probe's numbers; two probes are comparable only when these match."""

    seed: int = 0  # masks of document i come from a generator seeded by (seed, i)
    mask_rate: float = 0.5  # fraction of each document's tokens that is masked
    num_docs: int = 1000  # the first N documents of the source
    max_length: int = 512  # tokens kept per document (its beginning)
    batch_size: int = 8  # documents per forward; does not change the result
    text_file: str | None = None  # one document per line; None: Wikitext-103 validation
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    device: str | None = None  # None: cuda if available, else cpu
    compile: bool = False  # forwards through torch.compile, dynamic shapes (numbers equal up to kernel rounding)


def first_maskable(backbone) -> int:
    """0, or 1 for a model with shifted logits (Dream), whose position 0 has no predicting logit."""
    return int(backbone.spec.shift_logits)


def num_masked(length: int, mask_rate: float) -> int:
    """Masked positions in a document of `length` tokens: round half up, at least one."""
    return max(1, min(length, math.floor(mask_rate * length + 0.5)))


def document_mask(length: int, mask_rate: float, seed: int, index: int, first: int = 0) -> torch.Tensor:
    """(length,) bool mask of document `index` over positions first..length-1: a function of (seed, index)."""
    if length <= first:
        raise ValueError(f"a document of {length} tokens has no maskable position from {first} on")
    rng = np.random.default_rng([seed, index])
    positions = first + rng.permutation(length - first)[: num_masked(length - first, mask_rate)]
    is_masked = torch.zeros(length, dtype=torch.bool)
    is_masked[torch.from_numpy(positions)] = True
    return is_masked


def masked_loss_sums(
    backbone, rows: list[list[int]], masks: list[torch.Tensor], batch_size: int, desc: str
) -> tuple[float, int]:
    """(sum of CE over masked positions, number of masked positions) of one model over all rows."""
    spec = backbone.spec
    total_ce, total_masked = 0.0, 0
    batches = plan_batches([len(r) for r in rows], batch_size, backbone.honours_padding)
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False):
        input_ids, attention = pad_rows([rows[i] for i in batch], spec.pad_id, backbone.device)
        is_masked = torch.zeros_like(input_ids, dtype=torch.bool)
        for b, i in enumerate(batch):
            is_masked[b, : len(rows[i])] = masks[i].to(backbone.device)
        noisy_ids = torch.where(is_masked, torch.full_like(input_ids, spec.mask_id), input_ids)
        with torch.no_grad():
            logits, _ = backbone.forward(noisy_ids, attention)
            # Only masked positions go to fp32: the full (B, L, V) logits in fp32 would be large.
            ce = F.cross_entropy(logits[is_masked].float(), input_ids[is_masked], reduction="sum")
        total_ce += float(ce)  # float() is a host-device sync, once per batch
        total_masked += int(is_masked.sum())
    return total_ce, total_masked


def run_probe(base: str, finetunes: list[str], settings: ProbeSettings) -> dict:
    """Probe `base` and each fine-tune on the same masked documents; the JSON-ready result."""
    if not 0.0 < settings.mask_rate <= 1.0:
        raise AnalysisError(f"--mask-rate must be in (0, 1], got {settings.mask_rate}")
    docs, source = load_documents(settings.text_file, settings.num_docs)
    check_same_tokenizer(base, finetunes)
    models: list[dict] = []
    rows: list[list[int]] | None = None
    masks: list[torch.Tensor] = []
    first = 0
    for role, path in [("base", base)] + [("finetune", p) for p in finetunes]:
        backbone = load_model(path, settings.dtype, settings.device, settings.compile)
        if rows is None:
            # All checkpoints share the tokenizer (checked above), so the rows and masks are drawn once.
            first = first_maskable(backbone)
            rows = [r for r in tokenize_documents(backbone.tokenizer, docs, settings.max_length, source)
                    if len(r) > first]
            masks = [document_mask(len(r), settings.mask_rate, settings.seed, i, first) for i, r in enumerate(rows)]
        elif first_maskable(backbone) != first:
            raise AnalysisError(f"{path} and {base} differ in whether logits are shifted (Dream): the same "
                                "masks cannot be scored on both")
        ce_sum, count = masked_loss_sums(backbone, rows, masks, settings.batch_size, desc=f"probe {path}")
        loss = finite(ce_sum / count, f"probe loss of {path}")
        models.append({
            "role": role,
            "checkpoint": str(path),
            "path": checkpoint_label(path),
            "loss": loss,
            "num_docs": len(rows),
            "num_tokens": sum(len(r) for r in rows),
            "num_masked": count,
        })
        release(backbone)
    base_loss = models[0]["loss"]
    for entry in models[1:]:
        entry["delta"] = entry["loss"] - base_loss
    return {
        "command": "probe",
        "settings": {**asdict(settings), "text_source": source, "first_maskable": first},
        "base": models[0],
        "finetunes": models[1:],
    }


def format_probe(result: dict) -> str:
    """A short human-readable table of a probe result."""
    lines = [f"{'checkpoint':<60} {'loss':>10} {'delta':>10} {'tokens':>9} {'masked':>9}"]
    for entry in [result["base"]] + result["finetunes"]:
        delta = f"{entry['delta']:+.5f}" if "delta" in entry else "(base)"
        lines.append(f"{entry['checkpoint']:<60} {entry['loss']:>10.5f} {delta:>10} "
                     f"{entry['num_tokens']:>9d} {entry['num_masked']:>9d}")
    return "\n".join(lines)
