"""Typed training config: dataclass defaults, then a YAML file, then `--section.key value` overrides.

Every option is documented once, as the comment on its field below. `validate` is the one place that
checks values; it names the bad key and the allowed values. `deepspeed_config` is the one builder of
the DeepSpeed JSON. Nothing here imports torch, so a bad config fails before any model loads.

    load_config("dllm_jepa_train/configs/tiny_jepa.yaml", ["--jepa.lambda", "0.5"])
"""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

TASKS = ("gsm8k", "spider", "nlrx", "django")  # = lm_eval_diffusion.task_data.TASKS (checked in tests)
DATA_SOURCES = TASKS + ("jsonl", "text")
FAMILIES = ("auto", "llada", "dream", "generic")
TINY_FAMILIES = ("llada", "dream", "generic")
LOSS_NORMS = ("masked_mean", "llada")
ENGINES = ("deepspeed", "torch")
PRECISIONS = ("bf16", "fp32")
SPLITS = ("train", "validation", "test")


@dataclass
class ModelConfig:
    pretrained: str = ""  # local checkpoint dir or hub id; "" builds a tiny model on the fly (section `tiny`)
    family: str = "auto"  # auto (from config.model_type) | llada | dream | generic
    mask_id: int | None = None  # override the family's mask id (None: config `mask_token_id`, then tokenizer)
    revision: str | None = None  # hub revision of `pretrained`
    trust_remote_code: bool = True  # LLaDA and Dream ship their modeling code with the checkpoint
    gradient_checkpointing: bool = True  # on the online model: HF switch, else the model's own (LLaDA)


@dataclass
class TinyConfig:
    family: str = "llada"  # llada | dream | generic: which tiny model `dllm_jepa_train.toy.models` builds
    hidden_size: int = 64  # width of the tiny model
    num_layers: int = 2  # transformer blocks of the tiny model
    num_heads: int = 4  # attention heads of the tiny model
    vocab_size: int = 512  # byte-level BPE vocabulary, trained on the generated data
    seed: int = 0  # initialisation seed of the tiny model


@dataclass
class DataConfig:
    source: str = "gsm8k"  # gsm8k | spider | nlrx | django (task suite data) | jsonl | text (a file at `path`)
    split: str = "train"  # task split: train | validation | test
    data_dir: str = ""  # task data root in the shared/data layout; "" = $DLLM_JEPA_DATA, else the hub
    spider_db_dir: str = ""  # Spider sqlite folder; "" = <data_dir>/spider/database
    path: str = ""  # file for source jsonl (prompt/response or messages per line) or text (one document per line)
    generate: bool = False  # write synthetic data (dllm_jepa_train.toy.synthetic) to <output_dir>/data and read it
    generate_scale: float = 0.1  # size multiplier for the synthetic data
    generate_seed: int = 0  # seed of the synthetic data
    max_length: int = 512  # cap on prompt + response tokens; longer rows are truncated (and counted)
    pad_to_max_length: bool = False  # pad every batch to max_length (fixed shapes); else to its longest row
    use_attention_mask: bool = False  # False (LLaDA): the EOS fill is response, masked and scored; True: real padding
    max_rows: int = 0  # use only the first N rows (0: all)


@dataclass
class DiffusionConfig:
    t_context: Any = 0.2  # t_L, mask rate of the context view: a number, or [lo, hi] drawn per row
    loss_norm: str = "masked_mean"  # masked_mean: mean CE over masked tokens (eq. 2) | llada: sum CE/t / answer length, mean over rows


@dataclass
class JepaConfig:
    lambda_: float = 1.0  # YAML/CLI key `lambda`: weight of 1 - cos(pred, z_H); 0 = diffusion-only baseline
    t_target: Any = 0.7  # t_H, mask rate of the target view: a number, or [lo, hi] drawn per row
    predictor_depth: int = 2  # k transformer layers at backbone width on the pooled vector (paper: 1..5)
    predictor_heads: int = 0  # attention heads of the predictor layers (0: the backbone's)
    predictor_mlp_ratio: float = 4.0  # MLP width of the predictor layers / backbone width
    ema_decay: float = 0.996  # target = decay * target + (1 - decay) * online, once per optimizer step
    ema_shadow: bool = True  # bf16/fp16 compute: keep a compute-dtype copy of the fp32 EMA for its forward (+2 B/param); False casts per forward
    collapse_every: int = 50  # log collapse diagnostics of z_L and z_H every N optimizer steps (0: never)


@dataclass
class AnchorConfig:
    l2_lambda: float = 0.0  # gradient-side L2-to-base anchor: the optimizer sees g + l2_lambda * (theta - theta_base)


@dataclass
class OptimConfig:
    lr: float = 1e-5  # peak learning rate (AdamW)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.01  # decoupled weight decay; never on biases and norm weights (1-D params)
    warmup_ratio: float = 0.05  # linear warmup over this fraction of the optimizer steps, then cosine to zero
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: no clipping)
    micro_batch_size: int = 2  # rows per device per forward
    grad_accum: int = 2  # micro-batches per optimizer step
    epochs: int = 2  # passes over the data
    max_steps: int = 0  # stop after this many optimizer steps (0: run all epochs)


@dataclass
class RunConfig:
    output_dir: str = "runs/default"  # everything a run writes goes here
    seed: int = 42  # seeds model init, sampler order and view draws (paper: 42, 123, 777)
    engine: str = "deepspeed"  # deepspeed (ZeRO, any launcher or plain python) | torch (one process, no ZeRO)
    precision: str = "bf16"  # bf16 (DeepSpeed bf16 / torch autocast) | fp32
    zero_stage: int = 2  # DeepSpeed ZeRO stage 0, 1 or 2
    deepspeed_config: str = ""  # JSON file merged over the generated DeepSpeed config (it wins)
    save_every: int = 0  # resumable checkpoint every N optimizer steps (0: none)
    save_total_limit: int = 2  # resumable checkpoints kept (oldest deleted first)
    save_epochs: bool = False  # also export <output_dir>/epoch_<n>/ (HF checkpoint) after each epoch
    resume: str = ""  # "" fresh start | auto (latest in <output_dir>/checkpoints, if any) | a step_<n> dir
    log_every: int = 1  # log line every N optimizer steps (metrics.jsonl gets every step)
    tensorboard: bool = False  # also write TensorBoard scalars to <output_dir>/tensorboard
    debug_nan_at_step: int = 0  # testing: make the loss NaN at this optimizer step (0: off)
    debug_sigkill_at_step: int = 0  # testing: SIGKILL this process mid-way through this optimizer step (0: off)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    tiny: TinyConfig = field(default_factory=TinyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    jepa: JepaConfig = field(default_factory=JepaConfig)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)


class ConfigError(ValueError):
    """A config key or value is not allowed; the message names the key and what is allowed."""


def _field_name(key: str) -> str:
    """YAML/CLI key -> dataclass field (`lambda` is a Python keyword, so the field is `lambda_`)."""
    return "lambda_" if key == "lambda" else key


def _key_name(name: str) -> str:
    return "lambda" if name == "lambda_" else name


def _section_fields(section: Any) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(section)}


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` (from YAML or the command line) as the field's type, or ConfigError naming `key`."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(typing.get_args(hint)):
            raise ConfigError(f"{key}: expected a list of {len(typing.get_args(hint))} numbers, got {value!r}")
        return tuple(_coerce(v, t, key) for v, t in zip(value, typing.get_args(hint)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if hint is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)  # YAML reads `1e-5` (no dot) as a string; float() accepts it
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported config type {hint!r} for {key}")


def _section(cfg: TrainConfig, section: str) -> Any:
    """The section object named `section`, or ConfigError listing the allowed sections."""
    sections = [f.name for f in dataclasses.fields(cfg)]
    if section not in sections:
        raise ConfigError(f"unknown config section {section!r}; allowed sections: {', '.join(sections)}")
    return getattr(cfg, section)


def _apply(cfg: TrainConfig, section: str, key: str, value: Any) -> None:
    """Set `section.key` on `cfg`, or raise ConfigError naming the key and the allowed ones."""
    target = _section(cfg, section)
    fields = _section_fields(target)
    name = _field_name(key)
    if name not in fields:
        allowed = ", ".join(f"{section}.{_key_name(n)}" for n in fields)
        raise ConfigError(f"unknown config key {section}.{key!r}; allowed keys: {allowed}")
    hint = typing.get_type_hints(type(target))[name]
    setattr(target, name, _coerce(value, hint, f"{section}.{key}"))


def _apply_mapping(cfg: TrainConfig, data: dict, origin: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections, got {type(data).__name__}")
    for section, values in data.items():
        _section(cfg, str(section))
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: section {section!r} must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            _apply(cfg, str(section), str(key), value)


def parse_overrides(argv: list[str]) -> list[tuple[str, str, Any]]:
    """`--section.key value` / `--section.key=value` -> [(section, key, parsed value)]; values parse as YAML."""
    out: list[tuple[str, str, Any]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --section.key value")
        name, has_value, raw = arg[2:].partition("=")
        section, dot, key = name.partition(".")
        if not dot or not key:
            raise ConfigError(f"override --{name} must look like --section.key (e.g. --jepa.lambda 0.5)")
        if not has_value:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{name} needs a value")
            raw = argv[i + 1]
            i += 1
        i += 1
        value = yaml.safe_load(raw) if raw != "" else ""
        out.append((section, key, value))
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML at `path`, then `--section.key value` overrides; validated."""
    cfg = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        _apply_mapping(cfg, yaml.safe_load(path.read_text()) or {}, str(path))
    for section, key, value in parse_overrides(list(overrides or [])):
        _apply(cfg, section, key, value)
    validate(cfg)
    return cfg


def t_range(value: Any, key: str) -> tuple[float, float]:
    """A mask-rate setting (number or [lo, hi]) as (lo, hi) with 0 < lo <= hi <= 1; ConfigError naming `key`."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{key}: expected a number or [lo, hi], got {value!r}")
        lo, hi = (_coerce(v, float, key) for v in value)
    else:
        lo = hi = _coerce(value, float, key)
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"{key}: mask rates must satisfy 0 < lo <= hi <= 1, got {value!r}")
    return lo, hi


def _choice(value: Any, allowed: tuple, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}")


def _at_least(value: float, low: float, key: str) -> None:
    if value < low:
        raise ConfigError(f"{key}: must be >= {low}, got {value!r}")


def validate(cfg: TrainConfig) -> None:
    """The one check of every value; raises ConfigError naming the key and the allowed values."""
    _choice(cfg.model.family, FAMILIES, "model.family")
    _choice(cfg.tiny.family, TINY_FAMILIES, "tiny.family")
    for key in ("hidden_size", "num_layers", "num_heads"):
        _at_least(getattr(cfg.tiny, key), 1, f"tiny.{key}")
    if cfg.tiny.hidden_size % cfg.tiny.num_heads:
        raise ConfigError(f"tiny.hidden_size ({cfg.tiny.hidden_size}) must be a multiple of tiny.num_heads")
    _at_least(cfg.tiny.vocab_size, 300, "tiny.vocab_size")  # byte alphabet (256) plus specials and merges
    _choice(cfg.data.source, DATA_SOURCES, "data.source")
    _choice(cfg.data.split, SPLITS, "data.split")
    if cfg.data.source == "jsonl" and not cfg.data.path:
        raise ConfigError("data.path: required when data.source is jsonl")
    if cfg.data.source == "text" and not (cfg.data.path or cfg.data.generate or cfg.data.data_dir):
        raise ConfigError("data.path: required when data.source is text (or data.generate / data.data_dir with text/)")
    if cfg.data.source in ("jsonl",) and cfg.data.generate:
        raise ConfigError("data.generate: the synthetic data has no jsonl file; use a task or text source")
    if cfg.data.generate and cfg.data.data_dir:
        raise ConfigError("data.data_dir: must be empty when data.generate is true (the data goes to <output_dir>/data)")
    if cfg.data.generate_scale <= 0:
        raise ConfigError(f"data.generate_scale: must be > 0, got {cfg.data.generate_scale}")
    _at_least(cfg.data.max_length, 8, "data.max_length")
    _at_least(cfg.data.max_rows, 0, "data.max_rows")
    t_range(cfg.diffusion.t_context, "diffusion.t_context")
    t_range(cfg.jepa.t_target, "jepa.t_target")
    _choice(cfg.diffusion.loss_norm, LOSS_NORMS, "diffusion.loss_norm")
    _at_least(cfg.jepa.lambda_, 0.0, "jepa.lambda")
    _at_least(cfg.jepa.predictor_depth, 1, "jepa.predictor_depth")
    _at_least(cfg.jepa.predictor_heads, 0, "jepa.predictor_heads")
    if cfg.jepa.predictor_mlp_ratio <= 0:
        raise ConfigError(f"jepa.predictor_mlp_ratio: must be > 0, got {cfg.jepa.predictor_mlp_ratio}")
    if not 0.0 <= cfg.jepa.ema_decay < 1.0:
        raise ConfigError(f"jepa.ema_decay: must be in [0, 1), got {cfg.jepa.ema_decay}")
    _at_least(cfg.jepa.collapse_every, 0, "jepa.collapse_every")
    _at_least(cfg.anchor.l2_lambda, 0.0, "anchor.l2_lambda")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be > 0, got {cfg.optim.lr}")
    if not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: each must be in [0, 1), got {list(cfg.optim.betas)}")
    _at_least(cfg.optim.weight_decay, 0.0, "optim.weight_decay")
    if not 0.0 <= cfg.optim.warmup_ratio < 1.0:
        raise ConfigError(f"optim.warmup_ratio: must be in [0, 1), got {cfg.optim.warmup_ratio}")
    _at_least(cfg.optim.grad_clip, 0.0, "optim.grad_clip")
    for key in ("micro_batch_size", "grad_accum", "epochs"):
        _at_least(getattr(cfg.optim, key), 1, f"optim.{key}")
    _at_least(cfg.optim.max_steps, 0, "optim.max_steps")
    _choice(cfg.run.engine, ENGINES, "run.engine")
    _choice(cfg.run.precision, PRECISIONS, "run.precision")
    _choice(cfg.run.zero_stage, (0, 1, 2), "run.zero_stage")
    if cfg.run.deepspeed_config and cfg.run.engine != "deepspeed":
        raise ConfigError("run.deepspeed_config: only used with run.engine deepspeed")
    if cfg.run.deepspeed_config and not Path(cfg.run.deepspeed_config).is_file():
        raise ConfigError(f"run.deepspeed_config: file {cfg.run.deepspeed_config} does not exist")
    if not cfg.run.output_dir:
        raise ConfigError("run.output_dir: must not be empty")
    for key in ("save_every", "log_every", "debug_nan_at_step", "debug_sigkill_at_step"):
        _at_least(getattr(cfg.run, key), 0, f"run.{key}")
    _at_least(cfg.run.save_total_limit, 1, "run.save_total_limit")
    _at_least(cfg.run.log_every, 1, "run.log_every")


def to_dict(cfg: TrainConfig) -> dict:
    """The config as plain YAML-able data, with `lambda` spelled as in files."""
    out = {}
    for f in dataclasses.fields(cfg):
        section = dataclasses.asdict(getattr(cfg, f.name))
        out[f.name] = {_key_name(k): list(v) if isinstance(v, tuple) else v for k, v in section.items()}
    return out


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with `load_config`)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def deepspeed_config(cfg: TrainConfig) -> dict:
    """The DeepSpeed JSON from the one config; a user JSON (`run.deepspeed_config`) is merged over it.

    The optimizer and LR schedule are built by the trainer (torch AdamW, warmup + cosine) and passed
    to `deepspeed.initialize`; a user JSON with an `optimizer` block (e.g. FusedAdam on GPU) replaces
    the client AdamW. Micro-batch size and accumulation drive the trainer's loss normalisation, so a
    user JSON may not contradict them.
    """
    ds = {
        "train_micro_batch_size_per_gpu": cfg.optim.micro_batch_size,
        "gradient_accumulation_steps": cfg.optim.grad_accum,
        "gradient_clipping": cfg.optim.grad_clip,
        "bf16": {"enabled": cfg.run.precision == "bf16"},
        "zero_optimization": {"stage": cfg.run.zero_stage, "overlap_comm": True, "contiguous_gradients": True},
        "steps_per_print": 10**9,  # the trainer logs; DeepSpeed's own step prints would duplicate it
        "wall_clock_breakdown": False,
    }
    if cfg.run.deepspeed_config:
        user = json.loads(Path(cfg.run.deepspeed_config).read_text())
        ds = _merge(ds, user)
        for key, ours in (("train_micro_batch_size_per_gpu", cfg.optim.micro_batch_size),
                          ("gradient_accumulation_steps", cfg.optim.grad_accum)):
            if ds.get(key) != ours:
                option = "optim.micro_batch_size" if key.startswith("train_micro") else "optim.grad_accum"
                raise ConfigError(
                    f"run.deepspeed_config sets {key}={ds.get(key)} but {option}={ours}; set {option} instead"
                )
        if "train_batch_size" in user:
            raise ConfigError("run.deepspeed_config: remove train_batch_size; it follows from the micro-batch, "
                              "accumulation and world size")
    return ds


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
