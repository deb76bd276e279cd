"""Shared pieces of the analysis commands: text sources, checkpoint loading and checks, batching, run identity."""

from __future__ import annotations

import gc
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dllm_jepa_train import plugins
from dllm_jepa_train.analysis import AnalysisError

log = logging.getLogger(__name__)

WIKITEXT = ("Salesforce/wikitext", "wikitext-103-raw-v1", "validation")  # (path, name, split)
# Wikitext section titles look like " = Title = " or " = = Subsection = = "; they are not prose.
_WIKITEXT_HEADER = re.compile(r"^\s*(=\s*)+[^=].*?(\s*=)+\s*$")
RUN_CONFIG_NAMES = ("config.yaml", "config.yml", "config.json")  # the trainer writes config.yaml
# Folders the trainer exports checkpoints to; a LoRA run's final/ and epoch_<n>/ are adapter folders and
# final_merged/ (on request) its base + adapters merged.
EXPORT_NAME = re.compile(r"final|final_merged|epoch_\d+")


def read_text_file(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file (one document per line); AnalysisError when none."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"text file {path} does not exist")
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as err:
        raise AnalysisError(f"text file {path} is not UTF-8 text: {err}") from None
    docs = [line.strip() for line in lines if line.strip()]
    if not docs:
        raise AnalysisError(f"text file {path} has no non-empty lines (expected one document per line)")
    return docs


def is_wikitext_header(line: str) -> bool:
    """True for a Wikitext section title line such as ' = = Reception = = '."""
    return bool(_WIKITEXT_HEADER.match(line))


def load_wikitext(num_docs: int) -> list[str]:
    """The first `num_docs` paragraphs of Wikitext-103 validation (no empty lines, no headers)."""
    path, name, split = WIKITEXT
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # noqa: BLE001 - offline, missing cache, hub errors: all mean "pass a file"
        raise AnalysisError(
            f"could not load {path} ({name}, {split}) via datasets.load_dataset: {type(err).__name__}: {err}. "
            "Without network access or a populated HF cache, pass --text-file PATH (one document per line)"
        ) from None
    docs: list[str] = []
    for line in rows["text"]:
        if line.strip() and not is_wikitext_header(line):
            docs.append(line.strip())
            if len(docs) == num_docs:
                break
    if not docs:
        raise AnalysisError(f"{path} ({name}, {split}) yielded no documents")
    return docs


def load_documents(text_file: str | None, num_docs: int) -> tuple[list[str], str]:
    """The first `num_docs` documents of `text_file` (or Wikitext-103 validation) and a source label."""
    if num_docs < 1:
        raise AnalysisError(f"the number of documents must be >= 1, got {num_docs}")
    if text_file:
        docs = read_text_file(text_file)[:num_docs]
        source = str(Path(text_file).resolve())
    else:
        docs = load_wikitext(num_docs)
        source = "/".join(WIKITEXT)
    if len(docs) < num_docs:
        log.warning("%s has only %d documents (asked for %d); using all of them", source, len(docs), num_docs)
    return docs, source


def tokenize_documents(tokenizer: Any, docs: list[str], max_length: int, source: str) -> list[list[int]]:
    """Token ids of each document without special tokens, truncated to its first `max_length` tokens."""
    if max_length < 1:
        raise AnalysisError(f"--max-length must be >= 1, got {max_length}")
    rows = [tokenizer(doc, add_special_tokens=False)["input_ids"][:max_length] for doc in docs]
    if not any(rows):
        raise AnalysisError(f"{source}: every document tokenizes to zero tokens")
    return rows


def checkpoint_label(path: str) -> str:
    """A checkpoint's stable name: the absolute path of a local directory, else the hub id as given."""
    local = Path(path).expanduser()
    return str(local.resolve()) if local.exists() else str(path)


def load_tokenizer_facts(path: str) -> tuple[dict[str, int], int]:
    """(tokenizer vocabulary, config vocab size) of a checkpoint, without loading its weights (a LoRA
    adapter folder: its base's config, its own tokenizer else the base's)."""
    from lm_eval_diffusion.backbone import load_config_and_tokenizer

    try:
        config, tokenizer = load_config_and_tokenizer(str(path))
    except (OSError, ValueError) as err:
        raise AnalysisError(f"cannot load checkpoint {path}: {err}") from None
    return tokenizer.get_vocab(), int(getattr(config, "vocab_size", 0) or len(tokenizer))


def check_same_tokenizer(base: str, others: list[str]) -> None:
    """Raise AnalysisError unless every checkpoint in `others` has the tokenizer and vocabulary of `base`."""
    base_vocab, base_size = load_tokenizer_facts(base)
    for other in others:
        vocab, size = load_tokenizer_facts(other)
        if size != base_size:
            raise AnalysisError(
                f"checkpoints {base} and {other} have different vocabulary sizes ({base_size} vs {size}); "
                "their losses and hidden states are not comparable"
            )
        if vocab != base_vocab:
            differing = sorted(set(vocab.items()) ^ set(base_vocab.items()))[:3]
            raise AnalysisError(
                f"checkpoints {base} and {other} have different tokenizers "
                f"({len(base_vocab)} vs {len(vocab)} tokens; e.g. differing entries {differing})"
            )


def load_model(path: str, dtype: str, device: str | None, use_compile: bool = False,
               adapter_weights: str | Path | None = None) -> Any:
    """`lm_eval_diffusion.backbone.load_backbone` with its errors turned into AnalysisError; with
    `use_compile` (--compile) its forward runs through torch.compile, every dimension dynamic (no padding
    is added, so results equal eager ones up to kernel rounding), and `release` logs the graph count.
    A LoRA adapter folder loads as its base with the adapter merged (`adapter_weights`, e.g. the EMA's
    file, in place of the adapter's own)."""
    from lm_eval_diffusion.backbone import load_backbone

    try:
        backbone = load_backbone(str(path), dtype=dtype, device=device, adapter_weights=adapter_weights)
    except (OSError, ValueError) as err:
        raise AnalysisError(f"cannot load checkpoint {path}: {err}") from None
    if "adapter" in backbone.extra:
        log.info("%s: base %s + LoRA adapter%s, merged in %s", path, backbone.extra["base"],
                 f" weights {adapter_weights}" if adapter_weights else "", backbone.dtype)
    if use_compile:
        from lm_eval_diffusion.compiled import compile_backbone

        backbone.extra["compiled_graphs"] = compile_backbone(backbone)
    return backbone


def release(backbone: Any) -> None:
    """Free a model's weights before the next one loads: only one checkpoint is resident at a time."""
    if "compiled_graphs" in backbone.extra:
        log.info("%s: compile: %d graph(s) compiled", backbone.name, backbone.extra["compiled_graphs"]())
        # Dynamo keeps its graphs on the model class's forward, so they would pile up over checkpoints
        # until the recompile limit; the next checkpoint compiles afresh (from the on-disk cache).
        torch.compiler.reset()
    # Moving to meta frees the storage now, even while callers still hold the Backbone object.
    backbone.model.to("meta")
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def plan_batches(lengths: list[int], batch_size: int, honours_padding: bool) -> list[list[int]]:
    """Row indices per batch, longest first; a model that ignores padding only gets equal-length batches."""
    if batch_size < 1:
        raise AnalysisError(f"--batch-size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    for index in order:
        current = batches[-1] if batches else None
        fits = current is not None and len(current) < batch_size
        if fits and not honours_padding:
            fits = lengths[current[0]] == lengths[index]
        if fits:
            current.append(index)
        else:
            batches.append([index])
    return batches


def pad_rows(rows: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows: (B, L) long ids and (B, L) long attention mask (1 = real token)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention[b, : len(row)] = 1
    return ids.to(device), attention.to(device)


def write_json(path: str | Path, payload: dict) -> Path:
    """Write `payload` as indented JSON, creating parent folders; NaN and inf are refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


def read_json(path: str | Path, what: str) -> dict:
    """A JSON object from `path`; AnalysisError naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{what} {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise AnalysisError(f"{what} {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise AnalysisError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def method_name(jepa_lambda: float, l2_lambda: float) -> str:
    """Method of a run from its config: baseline (lambda 0), jepa (lambda > 0), anchor (L2 anchor > 0)."""
    if l2_lambda > 0:
        return "jepa+anchor" if jepa_lambda > 0 else "anchor"
    return "jepa" if jepa_lambda > 0 else "baseline"


# Which config keys change what a run learns is each field's `cell` flag (dllm_jepa_train.config); the
# others (bookkeeping, machine paths, diagnostics) are left out of a run's cell. With
# optim.global_batch_size set, how the batch is split over ranks (micro-batch, accumulation) is left out
# too: the saved accumulation depends on the world size.
BATCH_SPLIT_KEYS = ("optim.micro_batch_size", "optim.grad_accum")
# Short names of the keys the paper's tables vary, for labels.
SHORT_NAMES = {"model.pretrained": "backbone", "data.source": "task", "diffusion.t_context": "t_L",
               "jepa.t_target": "t_H", "jepa.lambda": "λ", "jepa.predictor_depth": "k", "optim.lr": "lr",
               "anchor.l2_lambda": "λ_L2"}


@dataclass(frozen=True)
class RunIdentity:
    """Who a run is: its cell (the config facts it shares with its baseline), its method and the method's
    own settings (`variant`: jepa.* for JEPA, anchor.l2_lambda for the anchor), and its seed."""

    cell: tuple[tuple[str, Any], ...]
    method: str
    variant: tuple[tuple[str, Any], ...]
    seed: int
    config: Path | None = None

    @property
    def ablation(self) -> str:
        """'no predictor' (identity predictor), 'symmetric views' (t_H = t_L), or ''."""
        facts = dict(self.variant)
        names = []
        if facts.get("jepa.predictor_depth") == 0:
            names.append("no predictor")
        if "jepa.t_target" in facts and facts["jepa.t_target"] == dict(self.cell).get("diffusion.t_context"):
            names.append("symmetric views")
        return ", ".join(names)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def identity_from_config(cfg: Any, config_path: Path | None = None) -> RunIdentity:
    """The RunIdentity of a typed TrainConfig (keys whose field says `cell=False` are left out)."""
    from dllm_jepa_train.config import fields_by_key, to_dict

    not_cell = tuple(key for key, f, _ in fields_by_key() if not f.metadata["cell"])

    flat = {f"{section}.{key}": _hashable(value) for section, values in to_dict(cfg).items()
            for key, value in values.items()}
    if plugins.plugin_prefix(cfg.model.pretrained) is None:  # the tiny section sizes plug-in (toy) models only
        flat = {k: v for k, v in flat.items() if not k.startswith("tiny.")}
    if cfg.data.source in ("jsonl", "text") and cfg.data.path:
        flat["data.file"] = Path(cfg.data.path).name  # which data, not where it lies on this machine
    method = method_name(cfg.jepa.lambda_, cfg.anchor.l2_lambda)
    variant = {k: v for k, v in flat.items()
               if (k.startswith("jepa.") and cfg.jepa.lambda_ > 0) or (k == "anchor.l2_lambda" and cfg.anchor.l2_lambda > 0)}
    ignored = not_cell + (BATCH_SPLIT_KEYS if cfg.optim.global_batch_size else ())
    cell = {k: v for k, v in flat.items()
            if k not in variant and not k.startswith("jepa.") and k != "anchor.l2_lambda" and k not in ignored}
    variant = {k: v for k, v in variant.items() if k not in not_cell}
    return RunIdentity(tuple(cell.items()), method, tuple(variant.items()), int(cfg.run.seed), config_path)


def find_run_config(checkpoint: str) -> Path | None:
    """The trainer's saved config of the run that exported `checkpoint` (<run_dir>/final -> <run_dir>/config.yaml).

    Only the trainer's exports qualify (a folder named `final`, `final_merged` or `epoch_<n>`, a HF
    checkpoint or a LoRA adapter folder): a tiny run's generated base model also lives in <run_dir>/base,
    and must not pass for the fine-tune.
    """
    local = Path(checkpoint).expanduser()
    if not local.is_dir() or not EXPORT_NAME.fullmatch(local.resolve().name):
        return None
    for name in RUN_CONFIG_NAMES:
        candidate = local.resolve().parent / name
        if candidate.is_file():
            return candidate
    return None


def load_run_config(path: Path, what: str = "") -> Any:
    """The typed config at `path` through the one config owner; AnalysisError naming the file."""
    from dllm_jepa_train.config import ConfigError, read_run_config

    try:
        return read_run_config(path)
    except ConfigError as err:
        raise AnalysisError(f"run config {path}{f' (of {what})' if what else ''}: {err}") from None


def run_identity(checkpoint: str) -> RunIdentity | None:
    """The RunIdentity from the run config beside `checkpoint`; None when there is none."""
    path = find_run_config(checkpoint)
    if path is None:
        return None
    return identity_from_config(load_run_config(path, f"checkpoint {checkpoint}"), path)


def finite(value: float, what: str) -> float:
    """`value` unchanged; AnalysisError when it is NaN or infinite (JSON and the tables cannot hold it)."""
    if not math.isfinite(value):
        raise AnalysisError(f"{what} is not finite ({value})")
    return value
