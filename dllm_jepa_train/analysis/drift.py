"""Per-layer geometric drift of fine-tunes from their base: 1 - cos of mean-pooled clean hidden states.

For every hidden state the model returns (index 0 = embedding output, then one per block), each of N
clean documents is mean-pooled over its tokens (no padding), and the drift of a layer is
1 - cos(pooled base, pooled fine-tune) averaged over the N documents. The summary is the mean over all
layers and over the early, middle and late third of them (`numpy.array_split` of the layer indices:
33 hidden states of a 32-block model split 11/11/11). With exactly two fine-tunes A and B, the ratio
drift(A) / drift(B) is reported overall and per third.

Smallest CPU run:

    python -m dllm_jepa_train.analysis drift --base /tmp/tiny --finetunes /tmp/tiny_jepa /tmp/tiny_base \
        --text-file /tmp/synthetic_data/text/valid.txt --num-samples 8 --out /tmp/drift.json
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import (
    check_same_tokenizer,
    checkpoint_label,
    load_documents,
    load_model,
    pad_rows,
    plan_batches,
    release,
    tokenize_documents,
)

THIRDS = ("early", "middle", "late")


@dataclass
class DriftSettings:
    """What fixes the drift numbers."""

    num_samples: int = 100  # the first N documents of the source
    max_length: int = 512  # tokens kept per document (its beginning)
    batch_size: int = 8  # documents per forward; does not change the result
    text_file: str | None = None  # one document per line; None: Wikitext-103 validation
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    device: str | None = None  # None: cuda if available, else cpu


def mean_pool(hidden: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
    """(B, L, D) hidden states, (B, L) 0/1 attention mask -> (B, D) fp32 mean over real tokens."""
    weights = attention.to(torch.float32).unsqueeze(-1)
    summed = (hidden.float() * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1.0)


def pooled_hidden_states(backbone, rows: list[list[int]], batch_size: int, desc: str) -> torch.Tensor:
    """(N, num_hidden_states, D) fp32 CPU tensor of mean-pooled clean hidden states, rows in input order."""
    out: torch.Tensor | None = None
    batches = plan_batches([len(r) for r in rows], batch_size, backbone.honours_padding)
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False):
        input_ids, attention = pad_rows([rows[i] for i in batch], backbone.spec.pad_id, backbone.device)
        with torch.no_grad():
            _, hidden = backbone.forward(input_ids, attention, output_hidden_states=True)
        if not hidden:
            raise AnalysisError(f"checkpoint {backbone.name} returned no hidden states")
        pooled = torch.stack([mean_pool(h, attention) for h in hidden], dim=1).cpu()
        if out is None:
            out = torch.zeros(len(rows), pooled.shape[1], pooled.shape[2])
        out[torch.tensor(batch)] = pooled
    assert out is not None
    return out


def layer_drift(base: torch.Tensor, finetune: torch.Tensor) -> list[float]:
    """Per-layer mean over samples of 1 - cos, from two (N, num_layers, D) pooled tensors."""
    cos = F.cosine_similarity(base.double(), finetune.double(), dim=-1, eps=1e-12)  # (N, num_layers)
    return (1.0 - cos).sum(dim=0).div(cos.shape[0]).tolist()


def summarize(curve: list[float]) -> dict:
    """Mean over layers and per-third means of a per-layer drift curve."""
    thirds = np.array_split(np.arange(len(curve)), 3)
    values = np.asarray(curve)
    return {
        "mean": float(values.mean()),
        "thirds": {name: float(values[idx].mean()) if len(idx) else None for name, idx in zip(THIRDS, thirds)},
        "third_layers": {name: [int(i) for i in idx] for name, idx in zip(THIRDS, thirds)},
    }


# Identical models give drift of about +-1e-16 (float rounding of 1 - cos), not exactly 0; a ratio over
# such a denominator would be noise, so it is reported as undefined.
ZERO_DRIFT = 1e-12


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is (numerically) zero."""
    if numerator is None or denominator is None or abs(denominator) <= ZERO_DRIFT:
        return None
    return numerator / denominator


def run_drift(base: str, finetunes: list[str], settings: DriftSettings) -> dict:
    """Drift of each fine-tune from `base` over the same clean documents; the JSON-ready result."""
    if not finetunes:
        raise AnalysisError("drift needs at least one fine-tune (--finetunes)")
    docs, source = load_documents(settings.text_file, settings.num_samples)
    check_same_tokenizer(base, finetunes)
    backbone = load_model(base, settings.dtype, settings.device)
    rows = [r for r in tokenize_documents(backbone.tokenizer, docs, settings.max_length, source) if r]
    base_pooled = pooled_hidden_states(backbone, rows, settings.batch_size, desc=f"drift {base}")
    release(backbone)
    entries = []
    for path in finetunes:
        backbone = load_model(path, settings.dtype, settings.device)
        pooled = pooled_hidden_states(backbone, rows, settings.batch_size, desc=f"drift {path}")
        release(backbone)
        if pooled.shape[1:] != base_pooled.shape[1:]:
            raise AnalysisError(
                f"checkpoints {base} and {path} differ in shape: {base_pooled.shape[1]} vs {pooled.shape[1]} "
                f"hidden states of width {base_pooled.shape[2]} vs {pooled.shape[2]}"
            )
        curve = layer_drift(base_pooled, pooled)
        entries.append({"checkpoint": str(path), "path": checkpoint_label(path), "per_layer": curve,
                        **summarize(curve)})
    result = {
        "command": "drift",
        "settings": {**asdict(settings), "text_source": source, "num_docs": len(rows)},
        "base": {"checkpoint": str(base), "path": checkpoint_label(base)},
        "num_hidden_states": int(base_pooled.shape[1]),
        "finetunes": entries,
        "ratio": None,
    }
    if len(entries) == 2:
        first, second = entries
        result["ratio"] = {
            "numerator": first["checkpoint"],
            "denominator": second["checkpoint"],
            "mean": ratio(first["mean"], second["mean"]),
            "thirds": {n: ratio(first["thirds"][n], second["thirds"][n]) for n in THIRDS},
        }
    return result


def format_drift(result: dict) -> str:
    """A short human-readable table of a drift result."""
    lines = [f"{'checkpoint':<60} {'mean':>9} {'early':>9} {'middle':>9} {'late':>9}"]
    for entry in result["finetunes"]:
        thirds = [entry["thirds"][n] for n in THIRDS]
        cells = " ".join(f"{v:>9.5f}" if v is not None else f"{'n/a':>9}" for v in thirds)
        lines.append(f"{entry['checkpoint']:<60} {entry['mean']:>9.5f} {cells}")
    if result["ratio"] is not None:
        r = result["ratio"]
        cells = " ".join(f"{n}={r['thirds'][n]:.3f}" if r["thirds"][n] is not None else f"{n}=n/a" for n in THIRDS)
        mean = f"{r['mean']:.3f}" if r["mean"] is not None else "n/a (zero denominator)"
        lines.append(f"ratio {r['numerator']} / {r['denominator']}: mean={mean} {cells}")
    return "\n".join(lines)
