"""Per-layer geometric drift of fine-tunes from their base: 1 - cos of mean-pooled clean hidden states.

§5's drift is "for each transformer layer ... 1 - cos": one value per layer, layers 1..N. The hidden
states LLaDA's and Dream's code return (`output_hidden_states`) are N + 1: index 0 is the embedding
output (the input to block 1), index i in 1..N-1 the output of block i, and index N the output of
block N after the final norm (Hugging Face's convention, which LLaDA's code follows). Drift uses
indices 1..N, one per transformer layer; `--include-embeddings` adds index 0 back (N + 1 values).
For each of those hidden states, each of the clean documents is mean-pooled over its tokens (no
padding), and the drift of a layer is 1 - cos(pooled base, pooled fine-tune) averaged over the
documents. The summary is the mean over those layers and over the early, middle and late third of
them (`numpy.array_split` of the layer list: LLaDA-8B's 32 layers split 11/11/10, layers 1-11, 12-22,
23-32). `layers` in the output lists the hidden-state index of each `per_layer` value, and
`third_layers` names the indices in each third. With exactly two fine-tunes A and B, the ratio
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
    compile: bool = False  # forwards through torch.compile, dynamic shapes (numbers equal up to kernel rounding)
    include_embeddings: bool = False  # also hidden state 0 (the embedding output); §5 counts layers only


def layer_indices(num_hidden_states: int, include_embeddings: bool) -> list[int]:
    """Hidden-state indices drift is measured on: 1..N of the N + 1 returned (0..N with the embeddings)."""
    if num_hidden_states < 2:
        raise AnalysisError(f"expected the embedding output plus one hidden state per layer, got "
                            f"{num_hidden_states} hidden state(s)")
    return list(range(0 if include_embeddings else 1, num_hidden_states))


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


def summarize(curve: list[float], layers: list[int]) -> dict:
    """Mean over layers and per-third means of a per-layer drift curve; `layers`: the hidden-state index
    of each value, reported per third."""
    if len(curve) != len(layers):
        raise ValueError(f"{len(curve)} drift values for {len(layers)} layers")
    thirds = np.array_split(np.arange(len(curve)), 3)
    values = np.asarray(curve)
    return {
        "mean": float(values.mean()),
        "thirds": {name: float(values[idx].mean()) if len(idx) else None for name, idx in zip(THIRDS, thirds)},
        "third_layers": {name: [layers[i] for i in idx] for name, idx in zip(THIRDS, thirds)},
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
    backbone = load_model(base, settings.dtype, settings.device, settings.compile)
    rows = [r for r in tokenize_documents(backbone.tokenizer, docs, settings.max_length, source) if r]
    base_pooled = pooled_hidden_states(backbone, rows, settings.batch_size, desc=f"drift {base}")
    release(backbone)
    layers = layer_indices(base_pooled.shape[1], settings.include_embeddings)
    entries = []
    for path in finetunes:
        backbone = load_model(path, settings.dtype, settings.device, settings.compile)
        pooled = pooled_hidden_states(backbone, rows, settings.batch_size, desc=f"drift {path}")
        release(backbone)
        if pooled.shape[1:] != base_pooled.shape[1:]:
            raise AnalysisError(
                f"checkpoints {base} and {path} differ in shape: {base_pooled.shape[1]} vs {pooled.shape[1]} "
                f"hidden states of width {base_pooled.shape[2]} vs {pooled.shape[2]}"
            )
        curve = layer_drift(base_pooled[:, layers], pooled[:, layers])
        entries.append({"checkpoint": str(path), "path": checkpoint_label(path), "per_layer": curve,
                        **summarize(curve, layers)})
    result = {
        "command": "drift",
        "settings": {**asdict(settings), "text_source": source, "num_docs": len(rows)},
        "base": {"checkpoint": str(base), "path": checkpoint_label(base)},
        "num_hidden_states": int(base_pooled.shape[1]),
        "layers": layers,  # hidden-state index of each per_layer value
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
    layers = result["layers"]
    spans = ", ".join(f"{n} {idx[0]}-{idx[-1]}" if idx else f"{n} none"
                      for n, idx in result["finetunes"][0]["third_layers"].items()) if result["finetunes"] else ""
    lines = [f"hidden states {layers[0]}..{layers[-1]} (0 = embedding output; {len(layers)} values; thirds: {spans})",
             f"{'checkpoint':<60} {'mean':>9} {'early':>9} {'middle':>9} {'late':>9}"]
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
