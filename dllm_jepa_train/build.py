"""Building a run from a validated config: process group, logging, plug-in inputs, data, model, `Trainer`.

    build_trainer(load_config("dllm_jepa_train/configs/tiny_jepa.yaml", ["--run.engine", "torch"])).train()

`run` is what `main.py` calls. The order is fixed: join the process group (the world size fixes the
accumulation), set up logging and write `config.yaml`, seed, turn plug-in names (`toy:llada`,
`toy:gsm8k`; `dllm_jepa_train.plugins`) into folders in the run directory, load the backbone, read and
tokenize the data (holding out the dev slice), then build the `Trainer`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path

import numpy as np
import torch

from dllm_jepa_train import plugins
from dllm_jepa_train.engines import deepspeed_config
from dllm_jepa_train.config import DataConfig, TrainConfig, resolve_batch, save_config
from dllm_jepa_train.data import dev_slice, load_examples, tokenize_examples
from dllm_jepa_train.trainer import Trainer
from lm_eval_diffusion import distributed

log = logging.getLogger("dllm_jepa_train")


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_logging(output_dir: Path, rank: int) -> None:
    """Rank 0 logs INFO to the console and <output_dir>/train.log; other ranks only warnings.

    `Trainer.train` routes the console handler through tqdm while its progress bar is shown
    (`tqdm.contrib.logging.logging_redirect_tqdm`), so log lines do not break the bar.
    """
    logger = logging.getLogger("dllm_jepa_train")
    for handler in logger.handlers:
        handler.close()
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    console = logging.StreamHandler()
    console.setFormatter(fmt)
    logger.addHandler(console)
    if rank == 0:
        file = logging.FileHandler(output_dir / "train.log")
        file.setFormatter(fmt)
        logger.addHandler(file)


def resolve_inputs(cfg: TrainConfig, output_dir: Path, rank: int) -> tuple[DataConfig, Path | None, str]:
    """(data config, data dir, checkpoint) with plug-in names turned into folders of the run (rank 0 writes).

    data.source `<prefix>:<name>` -> its plug-in's data in <output_dir>/data, read as the source the
    plug-in names; model.pretrained `<prefix>:<name>` -> its plug-in's checkpoint in <output_dir>/base,
    given the run's training text (plus the data dir's text/train.txt corpus, if any) for a tokenizer.
    Other names pass through unchanged.
    """
    data, data_dir = cfg.data, (Path(cfg.data.data_dir) if cfg.data.data_dir else None)
    pretrained = cfg.model.pretrained
    if plugins.plugin_prefix(data.source) is not None:
        resolver = plugins.resolve(data.source)
        data_dir = output_dir / plugins.DATA_DIR
        if rank == 0:
            resolver.prepare_data(data.source, data_dir, data)
            log.info("plug-in data (%s) in %s", data.source, data_dir)
        distributed.barrier()
        data = dataclasses.replace(data, source=resolver.data_source(data.source), data_dir=str(data_dir))
    if plugins.plugin_prefix(pretrained) is not None:
        resolver = plugins.resolve(pretrained)
        base = output_dir / plugins.MODEL_DIR
        if rank == 0:
            corpus = [p + r for p, r, _ in load_examples(data, None, data_dir)]
            if data_dir is not None and (data_dir / "text" / "train.txt").is_file():
                corpus += (data_dir / "text" / "train.txt").read_text(encoding="utf-8").split("\n")
            resolver.prepare_model(pretrained, base, corpus, cfg.tiny)
        distributed.barrier()
        pretrained = str(base)
    return data, data_dir, pretrained


def hold_out_dev(cfg: TrainConfig, data: DataConfig, examples: list, data_dir: Path | None, output_dir: Path,
                 rank: int) -> list:
    """Drop the seeded dev slice from the training examples; rank 0 writes its docs in the task's local layout.

    `data` is the resolved data config (a plug-in source already names its task).
    """
    from lm_eval_diffusion.task_data import load_docs

    held = dev_slice(len(examples), cfg.data.dev_rows, cfg.data.dev_seed)
    if rank == 0:
        docs = load_docs(data.source, data.split, data_dir or None)
        out = output_dir / "dev_data" / data.source / "test.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(json.dumps(docs[i]) + "\n" for i in held), encoding="utf-8")
        log.info("dev slice: %d of %d %s/%s docs held out (seed %d), written to %s", len(held), len(examples),
                 data.source, data.split, cfg.data.dev_seed, out)
    kept = set(range(len(examples))) - set(held)
    return [e for i, e in enumerate(examples) if i in kept]


def build_trainer(cfg: TrainConfig) -> Trainer:
    """Everything `run` needs, from a validated config: process group, data, model, engine, EMA."""
    from lm_eval_diffusion.backbone import load_backbone

    dist_info = distributed.init_distributed(cfg.run.engine)
    resolve_batch(cfg, dist_info.world_size)  # main.py did this from WORLD_SIZE; the process group is the truth
    output_dir = Path(cfg.run.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(output_dir, dist_info.rank)
    if dist_info.rank == 0:
        save_config(cfg, output_dir / "config.yaml")
        if cfg.run.engine == "deepspeed":
            (output_dir / "deepspeed_config.json").write_text(json.dumps(deepspeed_config(cfg), indent=2))
    set_seed(cfg.run.seed)

    data_cfg, data_dir, pretrained = resolve_inputs(cfg, output_dir, dist_info.rank)

    if cfg.run.engine == "deepspeed":
        from deepspeed.accelerator import get_accelerator

        device = torch.device(get_accelerator().device_name(dist_info.local_rank))
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # DeepSpeed bf16 trains bf16 weights (fp32 master in the optimizer); the torch engine keeps fp32
    # weights and autocasts.
    load_dtype = torch.bfloat16 if cfg.run.engine == "deepspeed" and cfg.run.precision == "bf16" else torch.float32
    family = None if cfg.model.family == "auto" else cfg.model.family
    bb = load_backbone(pretrained, family=family, dtype=load_dtype, device=device,
                       trust_remote_code=cfg.model.trust_remote_code, mask_id=cfg.model.mask_id,
                       revision=cfg.model.revision, probe_padding=False)
    examples = load_examples(data_cfg, bb.tokenizer, data_dir)
    if cfg.data.dev_rows:
        examples = hold_out_dev(cfg, data_cfg, examples, data_dir, output_dir, dist_info.rank)
    data = tokenize_examples(examples, bb.tokenizer, bb.spec.eos_id, cfg.data.max_length, bb.spec.shift_logits)
    rows = data.rows[: cfg.data.max_rows] if cfg.data.max_rows else data.rows
    log.info("data %s/%s: %d rows (%d truncated to %d tokens, %d dropped: prompt too long)", data_cfg.source,
             cfg.data.split, len(rows), data.num_truncated, cfg.data.max_length, data.num_dropped)
    log.info("batch: %d rank(s) x micro-batch %d x accumulation %d = %d rows per optimizer step%s",
             dist_info.world_size, cfg.optim.micro_batch_size, cfg.optim.grad_accum,
             dist_info.world_size * cfg.optim.micro_batch_size * cfg.optim.grad_accum,
             " (optim.global_batch_size)" if cfg.optim.global_batch_size else "")
    log.info("model %s: family %s, mask id %d, EOS %d, %s", pretrained, bb.spec.family, bb.spec.mask_id,
             bb.spec.eos_id, f"JEPA lambda={cfg.jepa.lambda_:g}" if cfg.jepa.lambda_ > 0 else "baseline (lambda=0)")
    return Trainer(cfg, bb.model, bb.tokenizer, bb.spec, rows, dist_info, pretrained, device)


def run(cfg: TrainConfig) -> Path:
    """Train from a validated config; return the exported `final/` directory."""
    try:
        return build_trainer(cfg).train()
    finally:
        # A process group still alive at interpreter exit can abort a rank after its work is done
        # ("terminate called without an active exception", exit 250 under 2 gloo ranks).
        distributed.destroy()
