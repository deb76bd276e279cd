"""Collapse diagnostics of a checkpoint's pooled embeddings z_L (context view) and z_H (target view).

The protocol of the paper's A.7 (Table 13) by default: the online model (the checkpoint's own weights)
encodes both views of the first 100 Wikitext-103 validation paragraphs (`--text-file` gives the
documents offline, one per line), so base, baseline and JEPA checkpoints are measured alike. `--target ema`
takes z_H from the EMA target saved in <checkpoint>/jepa/ema.safetensors instead (what the trainer's
own `collapse` log entries use); for a LoRA export (an adapter folder) the target is the base with the
adapters' EMA, <checkpoint>/jepa/ema_adapter.safetensors, merged in place of the adapter (a merged export,
final_merged/, holds no EMA: use final/); `--data run` takes the documents from the run's data source, held-out
split (gsm8k: test; spider/nlrx/django: validation), instead of Wikitext.

Uses the trainer's own pieces, so the numbers mean what the training log's entries mean: rows from
`dllm_jepa_train.data` (a document is a prompt-less row, its first token kept as context for shifted
logits as in training), views drawn by its `DiffusionCollator` at t_L / t_H, pooling by
`objectives.pool_embeddings` of the last hidden state over visible tokens, and
`objectives.collapse_stats` (per-dimension std, effective rank (sum s)^2 / sum s^2, cosine diversity
1 - mean |cos| over exactly --num-pairs (A.7: 5,000) random pairs of distinct rows drawn with replacement;
100 rows have only 4,950 distinct pairs, so some repeat). t_L / t_H are the run config's (`diffusion.t_context`,
`jepa.t_target`) unless given; a checkpoint without a run config (a base model) uses A.7's 0.2 / 0.7
unless given. Rows are chosen by a generator seeded with --seed (all of them when there are at most
--num-samples), and their views by the trainer's per-row generators with the same seed.

Smallest CPU run (a run directory written by the trainer):

    python -m dllm_jepa_train.analysis collapse --checkpoint runs/tiny_jepa/final --num-samples 16 \
        --out /tmp/collapse.json
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from dllm_jepa_train import plugins
from dllm_jepa_train.analysis import AnalysisError
from dllm_jepa_train.analysis.common import (
    checkpoint_label, find_run_config, load_documents, load_model, load_run_config, release,
)
from dllm_jepa_train.config import ConfigError, DataConfig, TrainConfig, t_range
from dllm_jepa_train.data import DiffusionCollator, load_examples, tokenize_examples
from dllm_jepa_train.objectives import collapse_stats, pool_embeddings
from lm_eval_diffusion.backbone import is_adapter_dir

log = logging.getLogger(__name__)

TARGETS = ("online", "ema")
DATA_SOURCES = ("wikitext", "run")
EMA_FILE = Path("jepa") / "ema.safetensors"
EMA_ADAPTER_FILE = Path("jepa") / "ema_adapter.safetensors"  # a LoRA export's: the adapters' EMA, peft key names
# A.7's mask rates (the paper's recipe), for a checkpoint without a run config (a base model).
BASE_T_CONTEXT, BASE_T_TARGET = 0.2, 0.7


@dataclass
class CollapseSettings:
    """Command-line choices of `collapse`; None means "from the run config"."""

    config: str | None = None  # run config; None: <checkpoint>/../config.yaml
    t_context: str | None = None  # t_L: a number or "lo,hi"; None: the run config's, else 0.2 (A.7)
    t_target: str | None = None  # t_H: a number or "lo,hi"; None: the run config's, else 0.7 (A.7)
    data: str = "wikitext"  # wikitext: Wikitext-103 validation or --text-file (A.7) | run: the run's data source
    text_file: str | None = None  # documents, one per line, in place of Wikitext-103 (offline)
    split: str | None = None  # --data run: split of the run's data source; None: its first non-train split
    data_dir: str | None = None  # --data run: task data root; None: as the run had it
    num_samples: int = 100  # documents (A.7: 100)
    num_pairs: int = 5000  # pairs of distinct rows for the cosine diversity, drawn with replacement (A.7: 5,000)
    seed: int | None = None  # row choice and views; None: run.seed of the run config (0 without one)
    max_length: int | None = None  # None: data.max_length of the run config (else 512)
    batch_size: int = 8  # rows per forward
    target: str = "online"  # online: z_H from the checkpoint's weights too (A.7) | ema: its EMA (jepa/ema*.safetensors)
    dtype: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bfloat16 | float16 | float32
    device: str | None = None  # None: cuda if available, else cpu
    compile: bool = False  # forwards through torch.compile, dynamic shapes (numbers equal up to kernel rounding)


def parse_rate(value: Any, key: str) -> tuple[float, float]:
    """A mask rate as (lo, hi): a number, a [lo, hi] list (run config) or '0.3' / '0.2,0.8' (command line)."""
    if isinstance(value, str):
        try:
            parts = [float(p) for p in value.split(",")]
        except ValueError:
            raise AnalysisError(f"{key}: expected a number or lo,hi; got {value!r}") from None
        value = parts[0] if len(parts) == 1 else parts
    try:
        return t_range(value, key)
    except ConfigError as err:
        raise AnalysisError(str(err)) from None


def heldout_split(source: str) -> str:
    """The first non-train split of a task source (gsm8k: test; spider, nlrx, django: validation)."""
    from lm_eval_diffusion import task_registry

    if source == "text":
        return "validation"
    if source not in task_registry.task_names():
        raise AnalysisError(f"data source {source!r} has no held-out split; pass --text-file")
    return task_registry.get_task(source).heldout_split


def heldout_examples(
    settings: CollapseSettings, run_cfg: TrainConfig | None, cfg_path: Path | None, tokenizer: Any
) -> tuple[list, str]:
    """(prompt, response, has_specials) examples of the run's held-out data and a description of the source."""
    if run_cfg is None or cfg_path is None:
        raise AnalysisError("--data run: no run config found beside the checkpoint; pass --config")
    data = run_cfg.data
    if data.source == "jsonl" or (data.source == "text" and data.path):
        raise AnalysisError(f"run config {cfg_path}: data source {data.source} ({data.path}) has no held-out "
                            "split; use --data wikitext (or --text-file with held-out documents)")
    if plugins.plugin_prefix(data.source) is not None:  # its plug-in wrote the data into <output_dir>/data
        data = dataclasses.replace(data, source=plugins.data_source(data.source),
                                   data_dir=str(cfg_path.parent / plugins.DATA_DIR))
    from lm_eval_diffusion import task_registry

    try:
        task_registry.load_task_modules(data.task_modules)  # a task from outside the project registers itself
    except ValueError as err:
        raise AnalysisError(f"run config {cfg_path}: data.task_modules: {err}") from None
    split = settings.split or heldout_split(data.source)
    if settings.data_dir:
        data_dir: Path | None = Path(settings.data_dir)
    else:
        data_dir = Path(data.data_dir) if data.data_dir else None
    held_out = dataclasses.replace(data, split=split, path="")
    try:
        examples = load_examples(held_out, tokenizer, data_dir)
    except (OSError, ValueError, KeyError) as err:
        raise AnalysisError(f"cannot load the {data.source} {split} split (data dir {data_dir}): {err}") from None
    if not examples:
        raise AnalysisError(f"the {data.source} {split} split (data dir {data_dir}) is empty")
    return examples, f"{data.source}/{split} ({data_dir or 'DLLM_JEPA_DATA or the hub'})"


def load_ema(backbone, path: Path) -> None:
    """Copy the EMA target's fp32 weights into `backbone` in place; only its output head may be absent."""
    from safetensors.torch import load_file

    state = load_file(str(path))
    result = backbone.model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise AnalysisError(f"{path} does not match the checkpoint's parameters: unexpected "
                            f"{result.unexpected_keys[:3]} ({len(result.unexpected_keys)} in all)")
    # The trainer drops an untied output head from the EMA: the target only needs hidden states.
    head = backbone.model.get_output_embeddings()
    head_prefixes = tuple(f"{name}." for name, module in backbone.model.named_modules() if module is head)
    missing = [n for n, _ in backbone.model.named_parameters()
               if n not in state and not (head_prefixes and n.startswith(head_prefixes))]
    if missing:
        raise AnalysisError(f"{path} lacks backbone parameters, e.g. {missing[:3]} ({len(missing)} in all)")


def missing_ema_message(checkpoint: Path, ema_path: Path) -> str:
    """Why `--target ema` cannot run on `checkpoint`, and where its EMA is when it is elsewhere."""
    meta_file = checkpoint / "jepa" / "config.json"
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        is_lora_meta = isinstance(meta.get("lora"), dict)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        is_lora_meta = False
    if not is_adapter_dir(checkpoint) and (checkpoint.name == "final_merged" or is_lora_meta):
        adapter_export = checkpoint.parent / "final" if checkpoint.name == "final_merged" else "the run's final/"
        return (f"--target ema: {checkpoint} is a merged LoRA export, which holds no EMA; run it on the adapter "
                f"export {adapter_export} (its jepa/ema_adapter.safetensors)")
    return f"--target ema: {ema_path} does not exist (a baseline run or a base model has no EMA)"


def embed_views(backbone, batches: list[dict[str, torch.Tensor]], view: str, desc: str) -> torch.Tensor:
    """(N, D) fp32 pooled last hidden state of one view ('context' or 'target') over all batches."""
    out = []
    for batch in tqdm(batches, desc=desc, unit="batch", leave=False):
        device = backbone.device
        ids = batch[f"{view}_ids"].to(device)
        keep = batch[f"{view}_keep"].to(device)
        attention = batch["attention_mask"].to(device) if "attention_mask" in batch else None
        with torch.no_grad():
            _, hidden = backbone.forward(ids, attention, output_hidden_states=True)
        out.append(pool_embeddings(hidden[-1], keep).cpu())
    return torch.cat(out)


def run_collapse(checkpoint: str, settings: CollapseSettings) -> dict:
    """z_L and z_H collapse statistics of `checkpoint` on held-out rows; the JSON-ready result."""
    if settings.target not in TARGETS:
        raise AnalysisError(f"--target {settings.target!r} is not one of {', '.join(TARGETS)}")
    if settings.data not in DATA_SOURCES:
        raise AnalysisError(f"--data {settings.data!r} is not one of {', '.join(DATA_SOURCES)}")
    if settings.data == "run" and settings.text_file:
        raise AnalysisError("--text-file replaces Wikitext-103 (--data wikitext); it cannot be used with --data run")
    if settings.num_samples < 2:
        raise AnalysisError(f"--num-samples must be >= 2 (statistics over pairs), got {settings.num_samples}")
    if settings.num_pairs < 1:
        raise AnalysisError(f"--num-pairs must be >= 1, got {settings.num_pairs}")
    cfg_path = Path(settings.config) if settings.config else find_run_config(checkpoint)
    if settings.config and not cfg_path.is_file():
        raise AnalysisError(f"run config {cfg_path} does not exist")
    run_cfg = load_run_config(cfg_path) if cfg_path else None
    if run_cfg is None:  # a base checkpoint: A.7's rates unless given
        run_t_context, run_t_target = BASE_T_CONTEXT, BASE_T_TARGET
    else:
        run_t_context, run_t_target = run_cfg.diffusion.t_context, run_cfg.jepa.t_target
    t_context = parse_rate(settings.t_context if settings.t_context is not None else run_t_context, "t_context")
    t_target = parse_rate(settings.t_target if settings.t_target is not None else run_t_target, "t_target")
    seed = settings.seed if settings.seed is not None else (run_cfg.run.seed if run_cfg else 0)
    data = run_cfg.data if run_cfg else DataConfig()
    max_length = settings.max_length or data.max_length
    use_attention_mask = data.use_attention_mask

    is_lora = is_adapter_dir(checkpoint)
    ema_path = Path(checkpoint) / (EMA_ADAPTER_FILE if is_lora else EMA_FILE)
    target = settings.target
    if target == "ema" and not ema_path.is_file():
        raise AnalysisError(missing_ema_message(Path(checkpoint), ema_path))

    backbone = load_model(checkpoint, settings.dtype, settings.device, settings.compile)
    spec = backbone.spec
    if settings.data == "run":
        examples, source = heldout_examples(settings, run_cfg, cfg_path, backbone.tokenizer)
    else:
        docs, source = load_documents(settings.text_file, settings.num_samples)
        examples = [("", doc, False) for doc in docs]  # a document is a prompt-less row, as text-source training
    rows = tokenize_examples(examples, backbone.tokenizer, spec.eos_id, max_length, spec.shift_logits).rows
    if len(rows) < 2:
        raise AnalysisError(f"{source}: fewer than two usable rows after tokenization")
    chosen = sorted(random.Random(seed).sample(range(len(rows)), min(settings.num_samples, len(rows))))
    if len(chosen) < settings.num_samples:
        log.warning("%s has only %d rows (asked for %d); using all of them", source, len(chosen), settings.num_samples)
    collator = DiffusionCollator(mask_id=spec.mask_id, eos_id=spec.eos_id, pad_id=spec.pad_id, t_context=t_context,
                                 t_target=t_target, seed=seed, max_length=max_length,
                                 use_attention_mask=use_attention_mask)
    batches = [collator([{**rows[i], "index": i, "epoch": 0} for i in chosen[start:start + settings.batch_size]])
               for start in range(0, len(chosen), max(1, settings.batch_size))]
    z_context = embed_views(backbone, batches, "context", desc=f"z_L {checkpoint}")
    if target == "ema" and is_lora:
        # The target is the same base with the EMA adapter merged: a second merge, one model resident at a time.
        release(backbone)
        backbone = load_model(checkpoint, settings.dtype, settings.device, settings.compile, adapter_weights=ema_path)
    elif target == "ema":
        load_ema(backbone, ema_path)
    z_target = embed_views(backbone, batches, "target", desc=f"z_H {checkpoint}")
    release(backbone)
    return {
        "command": "collapse",
        "checkpoint": str(checkpoint),
        "path": checkpoint_label(checkpoint),
        "run_config": str(cfg_path) if cfg_path else None,
        "settings": {**asdict(settings), "t_context": list(t_context), "t_target": list(t_target), "seed": seed,
                     "max_length": max_length, "use_attention_mask": use_attention_mask, "target": target,
                     "data_source": source, "num_rows": len(chosen)},
        "z_context": collapse_stats(z_context, num_pairs=settings.num_pairs, seed=seed),
        "z_target": collapse_stats(z_target, num_pairs=settings.num_pairs, seed=seed),
        "dim": int(z_context.shape[1]),
    }


def format_collapse(result: dict) -> str:
    """A short human-readable table of a collapse result."""
    lines = [f"{result['checkpoint']} ({result['settings']['num_rows']} rows, D = {result['dim']}, "
             f"z_H from {result['settings']['target']} weights, {result['settings']['data_source']})",
             f"{'view':<10} {'per-dim std':>12} {'eff. rank':>10} {'cos div.':>9}"]
    for name, key in (("z_L", "z_context"), ("z_H", "z_target")):
        s = result[key]
        lines.append(f"{name:<10} {s['per_dim_std_mean']:>12.5f} {s['effective_rank']:>10.3f} "
                     f"{s['cosine_diversity']:>9.5f}")
    return "\n".join(lines)
