"""Exports (Hugging Face checkpoints) and resumable training checkpoints, all written atomically.

Export, `<output_dir>/final/` (and `epoch_<n>/` with run.save_epochs):
    config.json, model*.safetensors, tokenizer files   the online backbone, loadable by
    *.py                                               `lm_eval_diffusion.backbone.load_backbone` and
                                                       `lm_eval --model llada_diffusion --model_args pretrained=<dir>`
    jepa/predictor.safetensors, jepa/ema.safetensors   predictor and fp32 EMA target (no output head)
    jepa/config.json                                   predictor shape, EMA decay, training step

Resumable checkpoint, `<output_dir>/checkpoints/step_<n>/` (`latest` names the newest):
    engine/                 DeepSpeed checkpoint (tag "engine": module = backbone + predictor, ZeRO
                            optimizer partitions, LR scheduler) or, for the torch engine, state.pt
    ema.safetensors         fp32 EMA master weights
    trainer_state.json      global step, epoch, step within epoch, data seed
    rng_rank<r>.pt          torch / CUDA / python / numpy RNG states of rank r

Atomic: every directory is written under a temporary name and renamed when complete, and `latest`
is replaced with os.replace, so a run killed at any point leaves the previous checkpoint intact.
The collator needs no RNG state of its own: each row's views come from a generator keyed by
(seed, epoch, row), and the row order from (seed, epoch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

LATEST = "latest"


def remote_code_dir(pretrained: str, revision: str | None = None) -> Path | None:
    """The folder holding a checkpoint's remote-code *.py files: the local dir, or its HF cache snapshot."""
    path = Path(pretrained)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(pretrained, revision=revision, allow_patterns=["*.py"], local_files_only=True))
    except Exception as err:  # noqa: BLE001 - not cached: the exporter says which files it could not copy
        log.warning("cannot find the cached files of %s (%s); remote-code files are not copied", pretrained, err)
        return None


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move a completed `tmp` directory to `final`, replacing an older one."""
    if final.exists():
        old = final.with_name(final.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old)
    else:
        tmp.rename(final)


@contextlib.contextmanager
def staged_export(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty `<out_dir>.tmp` to write an export into; on success it replaces `out_dir`, so a crash
    midway leaves the previous export (or none) in place, never a half-written one."""
    final = Path(out_dir)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    _replace_dir(tmp, final)


def write_jepa_dir(export: Path, predictor: torch.nn.Module | None, ema_state: dict[str, torch.Tensor] | None,
                   ema_name: str, jepa_meta: dict) -> None:
    """`<export>/jepa/`: predictor.safetensors, the EMA as `ema_name` (when given) and config.json."""
    jepa_dir = export / "jepa"
    jepa_dir.mkdir()
    if predictor is not None:
        save_file(_tensors(predictor.state_dict()), str(jepa_dir / "predictor.safetensors"))
    if ema_state is not None:
        save_file(_tensors(ema_state), str(jepa_dir / ema_name))
    (jepa_dir / "config.json").write_text(json.dumps(jepa_meta, indent=2))


def _tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU clones (safetensors refuses shared or strided storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def export_checkpoint(
    out_dir: str | Path,
    backbone: torch.nn.Module,
    tokenizer: Any,
    source: str,
    revision: str | None,
    predictor: torch.nn.Module | None,
    ema_state: dict[str, torch.Tensor] | None,
    jepa_meta: dict,
) -> Path:
    """Write the online backbone as a HF checkpoint (+ remote code, + jepa/) to `out_dir`, atomically."""
    with staged_export(out_dir) as tmp:
        _write_backbone(tmp, backbone, tokenizer, source, revision)
        write_jepa_dir(tmp, predictor, ema_state, "ema.safetensors", jepa_meta)
    return Path(out_dir)


def _write_backbone(tmp: Path, backbone: torch.nn.Module, tokenizer: Any, source: str, revision: str | None) -> None:
    """The HF checkpoint files, with the remote code of `source` and its auto_map."""
    backbone.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    code_dir = remote_code_dir(source, revision)
    if code_dir is not None:
        for file in sorted(code_dir.glob("*.py")):
            shutil.copyfile(file, tmp / file.name)
        source_config = code_dir / "config.json"
        if source_config.is_file():
            auto_map = json.loads(source_config.read_text()).get("auto_map")
            saved = json.loads((tmp / "config.json").read_text())
            if auto_map and saved.get("auto_map") != auto_map:
                saved["auto_map"] = auto_map  # the code files copied above are what auto_map names
                (tmp / "config.json").write_text(json.dumps(saved, indent=2))


def rng_state() -> dict:
    """This process's RNG states (torch, CUDA, python, numpy)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_root(output_dir: str | Path) -> Path:
    """<output_dir>/checkpoints."""
    return Path(output_dir) / "checkpoints"


def staging_dir(output_dir: str | Path, step: int) -> Path:
    """Where step `step` is written before `publish_checkpoint` renames it."""
    return checkpoint_root(output_dir) / f".tmp_step_{step}"


def write_local_state(stage: Path, rank: int, trainer_state: dict, ema_state: dict[str, torch.Tensor] | None) -> None:
    """Per-rank RNG states; on rank 0 also the trainer state and the EMA."""
    stage.mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), stage / f"rng_rank{rank}.pt")
    if rank == 0:
        (stage / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
        if ema_state is not None:
            save_file(_tensors(ema_state), str(stage / "ema.safetensors"))


def publish_checkpoint(output_dir: str | Path, step: int, keep: int) -> Path:
    """Rank 0, after every rank has written: rename the staging dir, point `latest` at it, prune old ones."""
    root = checkpoint_root(output_dir)
    final = root / f"step_{step}"
    _replace_dir(staging_dir(output_dir, step), final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    steps = sorted((int(p.name.split("_")[1]), p) for p in root.glob("step_*") if p.name.split("_")[1].isdigit())
    for _, old in steps[:-keep]:
        shutil.rmtree(old)
    return final


def find_resume_dir(output_dir: str | Path, resume: str) -> Path | None:
    """`run.resume` -> the checkpoint dir to load: auto = `latest` if any (None when there is none)."""
    if not resume:
        return None
    if resume == "auto":
        pointer = checkpoint_root(output_dir) / LATEST
        if not pointer.is_file():
            return None
        path = checkpoint_root(output_dir) / pointer.read_text().strip()
    else:
        path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"run.resume: {path} is not a complete checkpoint (no trainer_state.json)")
    return path


def read_local_state(path: Path, rank: int) -> tuple[dict, dict[str, torch.Tensor] | None]:
    """(trainer state, EMA state or None) of a checkpoint; restores this rank's RNG states."""
    trainer_state = json.loads((path / "trainer_state.json").read_text())
    rng_file = path / f"rng_rank{rank}.pt"
    if rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    else:
        log.warning("%s has no RNG state for rank %d (different world size?); RNG not restored", path, rank)
    ema_file = path / "ema.safetensors"
    return trainer_state, (load_file(str(ema_file)) if ema_file.is_file() else None)
