"""The options of a run config: one typed section (a dataclass) per concern, `TrainConfig` holding them.

Each option is a field made by `recipe` (it changes what a run learns: part of compare's cell) or
`runtime` (it does not), whose metadata holds its one documentation (`main.py --help`), that `cell` flag,
its allowed values (`choices`, `at_least`) and, where a read value needs more than the shared coercion by
type, its `parse` (mask rates become (lo, hi) here). Reading, validating and writing configs is
`dllm_jepa_train.config`'s job, which re-exports every name here. Nothing here imports torch.

    TrainConfig().jepa.t_target  # (0.7, 0.7)
"""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from lm_eval_diffusion import FAMILIES
from lm_eval_diffusion.coerce import CoercionError, coerce

# data.source: a registered task (lm_eval_diffusion.task_registry, after data.task_modules load), one of
# these file sources, or a plug-in name; data.split: a split some registered task has.
FILE_SOURCES = ("jsonl", "text")
MODEL_FAMILIES = ("auto",) + FAMILIES
LOSS_NORMS = ("row_mean", "masked_mean", "llada")  # objectives.diffusion_loss implements these
ENGINES = ("deepspeed", "torch")
PRECISIONS = ("bf16", "fp32")
ZERO_STAGES = (0, 1, 2)


class ConfigError(ValueError):
    """A config key or value is not allowed; the message names the key and what is allowed."""


def _paths(value: Any, key: str) -> tuple[str, ...]:
    """A list of paths (or one path) as a tuple of strings; ConfigError naming `key`."""
    if isinstance(value, str):
        value = [value] if value else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{key}: expected a list of file paths, got {value!r}")
    return tuple(value)


def t_range(value: Any, key: str) -> tuple[float, float]:
    """A mask-rate setting (a number, or [lo, hi]) as (lo, hi); ConfigError naming `key`.

    A fixed rate must satisfy 0 < t <= 1; a range [lo, hi] with lo < hi may start at 0 (eq. 2's
    t ~ U(0, 1): a draw of exactly 0 has probability 0, and `forward_mask` masks at least one token).
    """
    is_range = isinstance(value, (list, tuple))
    try:
        if is_range and len(value) != 2:
            raise CoercionError(f"{key}: expected a number or [lo, hi], got {value!r}")
        lo, hi = (coerce(v, float, key) for v in value) if is_range else (coerce(value, float, key),) * 2
    except CoercionError as err:
        raise ConfigError(str(err)) from None
    if not (0.0 < lo <= hi <= 1.0 or 0.0 == lo < hi <= 1.0):
        raise ConfigError(f"{key}: mask rates must satisfy 0 < t <= 1, or 0 <= lo < hi <= 1 for a range; "
                          f"got {value!r}")
    return lo, hi


def t_setting(rate: tuple[float, float]) -> float | list[float]:
    """A (lo, hi) mask rate as config files write it: the number for a fixed rate, else [lo, hi]."""
    return rate[0] if rate[0] == rate[1] else list(rate)


def _option(default: Any, help: str, cell: bool, *, choices: tuple = (), at_least: float | None = None,  # noqa: A002
            parse: Any = None) -> Any:
    """A config field. `help`: its one documentation (`main.py --help`); `cell`: whether it changes what a run
    learns (compare's cell); `choices` / `at_least`: its allowed values (`validate`); `parse(value, key)`: how
    a read value becomes the field's (default: the shared coercion by its type)."""
    metadata = {"help": help, "cell": cell, "choices": choices, "at_least": at_least, "parse": parse}
    return field(default=default, metadata=metadata)


def recipe(default: Any, help: str, **spec: Any) -> Any:  # noqa: A002
    """An option that changes what a run learns: part of the run's cell."""
    return _option(default, help, True, **spec)


def runtime(default: Any, help: str, **spec: Any) -> Any:  # noqa: A002
    """An option that leaves what a run learns unchanged (engine, paths, logging, diagnostics, the seed)."""
    return _option(default, help, False, **spec)


@dataclass
class ModelConfig:
    pretrained: str = recipe("GSAI-ML/LLaDA-8B-Base", "local checkpoint dir, hub id, or toy:llada | toy:dream | "
                             "toy:generic (a tiny model that dllm_jepa_train.toy builds into <output_dir>/base, sized "
                             "by section tiny)")
    family: str = recipe("auto", "auto (from config.model_type) | llada | dream | generic", choices=MODEL_FAMILIES)
    mask_id: int | None = recipe(None, "override the family's mask id (None: config mask_token_id, then tokenizer)")
    revision: str | None = recipe(None, "hub revision of model.pretrained")
    trust_remote_code: bool = runtime(True, "LLaDA and Dream ship their modeling code with the checkpoint")
    gradient_checkpointing: bool = runtime(True, "on the online model: HF switch, else the model's own (LLaDA)")
    compile: bool = runtime(False, "run the online and EMA target forwards through torch.compile (one graph each, "
                            "fullgraph: a forward that cannot compile stops the run naming the cause, never runs "
                            "eagerly instead); speed only: fp32 runs match eager to rounding; the GPU speed-up is "
                            "measured by benchmarks/bench_gpu.py (docs/training.md)")


@dataclass
class TinyConfig:
    hidden_size: int = recipe(64, "width of the tiny model (section used only with model.pretrained toy:*)", at_least=1)
    num_layers: int = recipe(2, "transformer blocks of the tiny model", at_least=1)
    num_heads: int = recipe(4, "attention heads of the tiny model", at_least=1)
    vocab_size: int = recipe(512, "byte-level BPE vocabulary, trained on the generated data", at_least=300)
    seed: int = recipe(0, "initialisation seed of the tiny model")


@dataclass
class DataConfig:
    source: str = recipe("gsm8k", "a registered task: gsm8k | spider | nlrx | django, or one from data.task_modules "
                         "(task suite data) | jsonl | text (a file at data.path) | toy:<task or text> (synthetic "
                         "data that dllm_jepa_train.toy writes to <output_dir>/data)")
    split: str = recipe("train", "task split: train | validation | test (those the registered tasks have)")
    data_dir: str = runtime("", "task data root in the shared/data layout; \"\" = $DLLM_JEPA_DATA, else the hub")
    # spider_db_dir and dev_rows belong to one task each; its module (lm_eval_diffusion/task_defs) checks them.
    spider_db_dir: str = runtime("", "spider only: Spider sqlite folder; \"\" = <data_dir>/spider/database")
    path: str = runtime("", "file for source jsonl (prompt/response or messages per line) or text (one document per "
                        "line)")
    generate_scale: float = recipe(0.1, "size multiplier of the synthetic data (toy: sources)")
    generate_seed: int = recipe(0, "seed of the synthetic data (toy: sources)")
    max_length: int = recipe(512, "cap on prompt + response tokens; longer rows are truncated (and counted)",
                             at_least=8)
    pad_to_max_length: bool = recipe(False, "pad every batch to max_length (fixed shapes); else to its longest row")
    use_attention_mask: bool = recipe(False, "False (LLaDA): the EOS fill is response, masked and scored; True: real "
                                      "padding")
    group_by_length: bool = recipe(False, "batch rows of similar length together (sorted within windows of 50 steps of "
                                   "the shuffled order, steps shuffled again): less padding for a mixture of short and "
                                   "long rows")
    max_rows: int = recipe(0, "use only the first N rows (0: all)", at_least=0)
    dev_rows: int = recipe(0, "gsm8k only: hold out a seeded slice of N training docs (never trained on) and write it "
                           "to <output_dir>/dev_data/gsm8k/test.jsonl, a dev split for choosing grid cells (lm_eval "
                           "--metadata '{\"data_dir\": \"<output_dir>/dev_data\"}'); 0: none", at_least=0)
    dev_seed: int = recipe(0, "seed of the dev slice; the same for every run of a grid, whatever run.seed is")
    task_modules: tuple[str, ...] = runtime((), "task modules to import before validation, by path (a task's "
                                            "lm-eval utils.py that calls task_registry.register_task; "
                                            "docs/extending.md); [] = the built-in tasks only",
                                            parse=_paths)


@dataclass
class DiffusionConfig:
    t_context: tuple[float, float] = recipe((0.2, 0.2), "t_L, mask rate of the context view: a number in (0, 1], or "
                                            "[lo, hi] drawn per row (0 <= lo < hi <= 1; [0, 1] is eq. 2's t ~ U(0, 1))",
                                            parse=t_range)
    loss_norm: str = recipe("row_mean", "row_mean (eq. 2): per row, mean CE over its masked tokens, then the mean over "
                            "the step's rows | masked_mean: the token mean, CE summed over every masked token of the "
                            "step / their count (a row with more masked tokens weighs more; not eq. 2) | llada "
                            "(LLaDA's SFT code): per row, sum CE/t / answer length, then the mean over the step's rows",
                            choices=LOSS_NORMS)


@dataclass
class JepaConfig:
    lambda_: float = recipe(1.0, "YAML/CLI key `lambda`: weight of 1 - cos(pred, z_H); 0 = diffusion-only baseline",
                            at_least=0.0)
    t_target: tuple[float, float] = recipe((0.7, 0.7), "t_H, mask rate of the target view: a number, or [lo, hi] drawn "
                                           "per row; = diffusion.t_context gives symmetric views", parse=t_range)
    predictor_depth: int = recipe(2, "k transformer layers at backbone width on the pooled vector (paper: 1..5); 0 = "
                                  "identity predictor (no parameters: plain stop-gradient two-view cosine)", at_least=0)
    predictor_heads: int = recipe(0, "attention heads of the predictor layers (0: the backbone's)", at_least=0)
    predictor_mlp_ratio: float = recipe(4.0, "MLP width of the predictor layers / backbone width")
    ema_decay: float = recipe(0.996, "target = decay * target + (1 - decay) * online, once per optimizer step")
    ema_shadow: bool = runtime(True, "bf16/fp16 compute: keep a compute-dtype copy of the fp32 EMA for its forward (+2 "
                               "B/param); False casts per forward")
    ema_fused: str = runtime("auto", "the EMA update as one compiled kernel per tensor (12 B/param; needs a working "
                             "torch.compile / Triton): auto = on CUDA, true, or false = plain foreach passes "
                             "(bit-identical to the CPU path); same values up to 1 fp32 ulp", choices=("auto", "true", "false"))
    collapse_every: int = runtime(50, "log collapse diagnostics of z_L and z_H every N optimizer steps (0: never)",
                                  at_least=0)
    collapse_window: int = runtime(64, "pooled vectors (gathered over ranks, rolling over steps) the collapse "
                                   "diagnostics are computed on; >= 2", at_least=2)


@dataclass
class AnchorConfig:
    l2_lambda: float = recipe(0.0, "gradient-side L2-to-base anchor: the optimizer sees g + l2_lambda * (theta - "
                              "theta_base), the gradient of l2_lambda / 2 ||theta - theta_base||^2 (the paper writes "
                              "l2_lambda ||theta - theta_base||^2 and does not say which it ran)", at_least=0.0)


def _names(value: Any, key: str) -> tuple[str, ...]:
    """A list of module names (or one name) as a tuple of strings; ConfigError naming `key`."""
    if isinstance(value, str):
        value = [value] if value else []
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and re.fullmatch(r"[\w.]+", v)
                                                       for v in value):
        raise ConfigError(f"{key}: expected a list of module names such as q_proj (letters, digits, _ and .), "
                          f"got {value!r}")
    return tuple(value)


@dataclass
class LoraConfig:
    enabled: bool = recipe(False, "train LoRA adapters (peft) on the transformer blocks instead of every weight; our "
                           "extension: the paper's runs are full fine-tuning (docs/training.md, LoRA)")
    rank: int = recipe(16, "adapter rank r (ours: the paper trains no adapters)", at_least=1)
    alpha: float = recipe(32.0, "adapter scale numerator: the update is alpha / rank * B A", at_least=0.0)
    dropout: float = recipe(0.05, "dropout on the adapter input in the online forward (the EMA target's forward runs "
                            "without it)", at_least=0.0)
    target_modules: tuple[str, ...] = recipe((), "module names inside the transformer blocks to adapt (never the "
                                             "output head); [] = the family's defaults (llada: q_proj k_proj v_proj "
                                             "attn_out ff_proj up_proj ff_out; dream: q_proj k_proj v_proj o_proj "
                                             "gate_proj up_proj down_proj)", parse=_names)
    export_merged: bool = runtime(False, "also write <output_dir>/final_merged/: base + adapters merged into one "
                                  "Hugging Face checkpoint (full size)")


@dataclass
class OptimConfig:
    lr: float = recipe(1e-5, "peak learning rate (AdamW)")
    betas: tuple[float, float] = recipe((0.9, 0.999), "AdamW betas")
    eps: float = recipe(1e-8, "AdamW epsilon")
    weight_decay: float = recipe(0.01, "decoupled weight decay; never on biases and norm weights (1-D params: our "
                                 "choice, the paper is silent)", at_least=0.0)
    warmup_ratio: float = recipe(0.05, "linear warmup over this fraction of the optimizer steps, then cosine to zero")
    grad_clip: float = recipe(1.0, "clip the global gradient norm to this (0: no clipping); the paper lists no "
                              "clipping: the paper configs' 1.0 is our choice", at_least=0.0)
    micro_batch_size: int = recipe(2, "rows per device per forward", at_least=1)
    grad_accum: int = recipe(2, "micro-batches per optimizer step; derived when optim.global_batch_size is set",
                             at_least=1)
    global_batch_size: int = recipe(0, "rows per optimizer step over all ranks (paper: 32); set: grad_accum = global / "
                                    "(world size x micro_batch_size), which must divide; 0: use grad_accum", at_least=0)
    epochs: int = recipe(2, "passes over the data", at_least=1)
    max_steps: int = recipe(0, "stop after this many optimizer steps (0: run all epochs)", at_least=0)


@dataclass
class RunConfig:
    output_dir: str = runtime("runs/default", "everything a run writes goes here")
    seed: int = runtime(42, "seeds model init, sampler order and view draws (paper: 42, 123, 777)")
    engine: str = runtime("deepspeed", "deepspeed (ZeRO, any launcher or plain python) | torch (one process, no ZeRO)",
                          choices=ENGINES)
    precision: str = runtime("bf16", "bf16 (DeepSpeed bf16 / torch autocast) | fp32", choices=PRECISIONS)
    zero_stage: int = runtime(2, "DeepSpeed ZeRO stage 0, 1 or 2", choices=ZERO_STAGES)
    deepspeed_config: str = runtime("", "JSON file merged over the generated DeepSpeed config (it wins)")
    save_every: int = runtime(0, "resumable checkpoint every N optimizer steps (0: none)", at_least=0)
    save_total_limit: int = runtime(2, "resumable checkpoints kept (oldest deleted first)", at_least=1)
    save_epochs: bool = runtime(False, "also export <output_dir>/epoch_<n>/ (HF checkpoint) after each epoch")
    resume: str = runtime("", "\"\" fresh start | auto (latest in <output_dir>/checkpoints, if any) | a step_<n> dir")
    log_every: int = runtime(1, "log line every N optimizer steps (metrics.jsonl gets every step)", at_least=1)
    tensorboard: bool = runtime(False, "also write TensorBoard scalars to <output_dir>/tensorboard")
    debug_nan_at_step: int = runtime(0, "testing: make the loss NaN at this optimizer step (0: off)", at_least=0)
    debug_sigkill_at_step: int = runtime(0, "testing: SIGKILL this process mid-way through this optimizer step (0: "
                                         "off)", at_least=0)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    jepa: JepaConfig = field(default_factory=JepaConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


def key_name(name: str) -> str:
    """Dataclass field -> YAML/CLI key (`lambda` is a Python keyword, so the field is `lambda_`)."""
    return "lambda" if name == "lambda_" else name


@functools.cache
def fields_by_key() -> tuple[tuple[str, dataclasses.Field, Any], ...]:
    """Every option as (`section.key`, its dataclass field, its type), in declaration order."""
    return tuple((f"{section.name}.{key_name(f.name)}", f, typing.get_type_hints(section.default_factory)[f.name])
                 for section in dataclasses.fields(TrainConfig) for f in dataclasses.fields(section.default_factory))
