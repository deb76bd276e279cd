"""Typed training config, the one owner of run configs: dataclass defaults, then YAML files (later ones
override earlier ones), then `--section.key value` overrides.

The trainer (`main.py`), the sweep (`sweep.py`) and every analysis command read configs through this
module: `load_config` for a run about to start (validated), `read_run_config` for the `config.yaml` a
finished run wrote (typed, not re-validated: its paths may not exist on this machine). Every option is
documented once, as the `help` of its field (`main.py --help` prints them). `validate` is the one place
that checks values; it names the bad key and the allowed values. `resolve_batch` derives the gradient
accumulation from `optim.global_batch_size` and the world size; `deepspeed_config` is the one builder of
the DeepSpeed JSON. Nothing here imports torch, so a bad config fails before any model loads.

    load_config("dllm_jepa_train/configs/tiny_jepa.yaml", ["--jepa.lambda", "0.5"])
"""

from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dllm_jepa_train import plugins
from lm_eval_diffusion import FAMILIES
from lm_eval_diffusion.coerce import CoercionError, coerce
from lm_eval_diffusion.task_data import SPLITS as TASK_SPLITS
from lm_eval_diffusion.task_data import TASKS

SPLITS = tuple(dict.fromkeys(s for task in TASKS for s in TASK_SPLITS[task]))  # train, validation, test
DATA_SOURCES = TASKS + ("jsonl", "text")
MODEL_FAMILIES = ("auto",) + FAMILIES
LOSS_NORMS = ("row_mean", "masked_mean", "llada")  # objectives.diffusion_loss implements these
ENGINES = ("deepspeed", "torch")
PRECISIONS = ("bf16", "fp32")
ZERO_STAGES = (0, 1, 2)


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A config field; `help` is its one documentation, shown by `main.py --help`."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class ModelConfig:
    pretrained: str = option("GSAI-ML/LLaDA-8B-Base", "local checkpoint dir, hub id, or toy:llada | toy:dream | toy:generic (a tiny model "
                                 "that dllm_jepa_train.toy builds into <output_dir>/base, sized by section tiny)")
    family: str = option("auto", "auto (from config.model_type) | llada | dream | generic")
    mask_id: int | None = option(None, "override the family's mask id (None: config mask_token_id, then tokenizer)")
    revision: str | None = option(None, "hub revision of model.pretrained")
    trust_remote_code: bool = option(True, "LLaDA and Dream ship their modeling code with the checkpoint")
    gradient_checkpointing: bool = option(True, "on the online model: HF switch, else the model's own (LLaDA)")


@dataclass
class TinyConfig:
    hidden_size: int = option(64, "width of the tiny model (section used only with model.pretrained toy:*)")
    num_layers: int = option(2, "transformer blocks of the tiny model")
    num_heads: int = option(4, "attention heads of the tiny model")
    vocab_size: int = option(512, "byte-level BPE vocabulary, trained on the generated data")
    seed: int = option(0, "initialisation seed of the tiny model")


@dataclass
class DataConfig:
    source: str = option("gsm8k", "gsm8k | spider | nlrx | django (task suite data) | jsonl | text (a file at data.path)"
                                  " | toy:<task or text> (synthetic data that dllm_jepa_train.toy writes to <output_dir>/data)")
    split: str = option("train", "task split: train | validation | test")
    data_dir: str = option("", "task data root in the shared/data layout; \"\" = $DLLM_JEPA_DATA, else the hub")
    spider_db_dir: str = option("", "Spider sqlite folder; \"\" = <data_dir>/spider/database")
    path: str = option("", "file for source jsonl (prompt/response or messages per line) or text (one document per line)")
    generate_scale: float = option(0.1, "size multiplier of the synthetic data (toy: sources)")
    generate_seed: int = option(0, "seed of the synthetic data (toy: sources)")
    max_length: int = option(512, "cap on prompt + response tokens; longer rows are truncated (and counted)")
    pad_to_max_length: bool = option(False, "pad every batch to max_length (fixed shapes); else to its longest row")
    use_attention_mask: bool = option(False, "False (LLaDA): the EOS fill is response, masked and scored; True: real padding")
    group_by_length: bool = option(False, "batch rows of similar length together (sorted within windows of 50 steps of "
                                          "the shuffled order, steps shuffled again): less padding for a mixture of short "
                                          "and long rows")
    max_rows: int = option(0, "use only the first N rows (0: all)")
    dev_rows: int = option(0, "gsm8k only: hold out a seeded slice of N training docs (never trained on) and write "
                              "it to <output_dir>/dev_data/gsm8k/test.jsonl, a dev split for choosing grid cells "
                              "(lm_eval --metadata '{\"data_dir\": \"<output_dir>/dev_data\"}'); 0: none")
    dev_seed: int = option(0, "seed of the dev slice; the same for every run of a grid, whatever run.seed is")


@dataclass
class DiffusionConfig:
    t_context: Any = option(0.2, "t_L, mask rate of the context view: a number in (0, 1], or [lo, hi] drawn per row "
                                 "(0 <= lo < hi <= 1; [0, 1] is eq. 2's t ~ U(0, 1))")
    loss_norm: str = option("row_mean", "row_mean (eq. 2): per row, mean CE over its masked tokens, then the mean "
                                        "over the step's rows | masked_mean: the token mean, CE summed over every "
                                        "masked token of the step / their count (a row with more masked tokens "
                                        "weighs more; not eq. 2) | llada (LLaDA's SFT code): per row, sum CE/t / "
                                        "answer length, then the mean over the step's rows")


@dataclass
class JepaConfig:
    lambda_: float = option(1.0, "YAML/CLI key `lambda`: weight of 1 - cos(pred, z_H); 0 = diffusion-only baseline")
    t_target: Any = option(0.7, "t_H, mask rate of the target view: a number, or [lo, hi] drawn per row; "
                                "= diffusion.t_context gives symmetric views")
    predictor_depth: int = option(2, "k transformer layers at backbone width on the pooled vector (paper: 1..5); "
                                     "0 = identity predictor (no parameters: plain stop-gradient two-view cosine)")
    predictor_heads: int = option(0, "attention heads of the predictor layers (0: the backbone's)")
    predictor_mlp_ratio: float = option(4.0, "MLP width of the predictor layers / backbone width")
    ema_decay: float = option(0.996, "target = decay * target + (1 - decay) * online, once per optimizer step")
    ema_shadow: bool = option(True, "bf16/fp16 compute: keep a compute-dtype copy of the fp32 EMA for its forward "
                                    "(+2 B/param); False casts per forward")
    collapse_every: int = option(50, "log collapse diagnostics of z_L and z_H every N optimizer steps (0: never)")
    collapse_window: int = option(64, "pooled vectors (gathered over ranks, rolling over steps) the collapse "
                                      "diagnostics are computed on; >= 2")


@dataclass
class AnchorConfig:
    l2_lambda: float = option(0.0, "gradient-side L2-to-base anchor: the optimizer sees g + l2_lambda * "
                                   "(theta - theta_base), the gradient of l2_lambda / 2 ||theta - theta_base||^2 "
                                   "(the paper writes l2_lambda ||theta - theta_base||^2 and does not say which "
                                   "it ran)")


@dataclass
class OptimConfig:
    lr: float = option(1e-5, "peak learning rate (AdamW)")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas")
    eps: float = option(1e-8, "AdamW epsilon")
    weight_decay: float = option(0.01, "decoupled weight decay; never on biases and norm weights (1-D params: "
                                           "our choice, the paper is silent)")
    warmup_ratio: float = option(0.05, "linear warmup over this fraction of the optimizer steps, then cosine to zero")
    grad_clip: float = option(1.0, "clip the global gradient norm to this (0: no clipping); the paper lists no "
                                     "clipping: the paper configs' 1.0 is our choice")
    micro_batch_size: int = option(2, "rows per device per forward")
    grad_accum: int = option(2, "micro-batches per optimizer step; derived when optim.global_batch_size is set")
    global_batch_size: int = option(0, "rows per optimizer step over all ranks (paper: 32); set: grad_accum = "
                                       "global / (world size x micro_batch_size), which must divide; 0: use grad_accum")
    epochs: int = option(2, "passes over the data")
    max_steps: int = option(0, "stop after this many optimizer steps (0: run all epochs)")


@dataclass
class RunConfig:
    output_dir: str = option("runs/default", "everything a run writes goes here")
    seed: int = option(42, "seeds model init, sampler order and view draws (paper: 42, 123, 777)")
    engine: str = option("deepspeed", "deepspeed (ZeRO, any launcher or plain python) | torch (one process, no ZeRO)")
    precision: str = option("bf16", "bf16 (DeepSpeed bf16 / torch autocast) | fp32")
    zero_stage: int = option(2, "DeepSpeed ZeRO stage 0, 1 or 2")
    deepspeed_config: str = option("", "JSON file merged over the generated DeepSpeed config (it wins)")
    save_every: int = option(0, "resumable checkpoint every N optimizer steps (0: none)")
    save_total_limit: int = option(2, "resumable checkpoints kept (oldest deleted first)")
    save_epochs: bool = option(False, "also export <output_dir>/epoch_<n>/ (HF checkpoint) after each epoch")
    resume: str = option("", "\"\" fresh start | auto (latest in <output_dir>/checkpoints, if any) | a step_<n> dir")
    log_every: int = option(1, "log line every N optimizer steps (metrics.jsonl gets every step)")
    tensorboard: bool = option(False, "also write TensorBoard scalars to <output_dir>/tensorboard")
    debug_nan_at_step: int = option(0, "testing: make the loss NaN at this optimizer step (0: off)")
    debug_sigkill_at_step: int = option(0, "testing: SIGKILL this process mid-way through this optimizer step (0: off)")


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
    """`value` as the field's type (the coercion shared with llada_diffusion's model_args), or ConfigError."""
    try:
        return coerce(value, hint, key)
    except CoercionError as err:
        raise ConfigError(str(err)) from None


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


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be parsed: {err}") from None


def build_config(paths: str | Path | list | tuple | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then each YAML in `paths` (later files win), then `--section.key value` overrides; not validated."""
    cfg = TrainConfig()
    if paths is not None:
        for path in [paths] if isinstance(paths, (str, Path)) else list(paths):
            _apply_mapping(cfg, _read_yaml(Path(path)), str(path))
    for section, key, value in parse_overrides(list(overrides or [])):
        _apply(cfg, section, key, value)
    return cfg


def load_config(paths: str | Path | list | tuple | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file(s) at `paths`, then `--section.key value` overrides; validated."""
    cfg = build_config(paths, overrides)
    validate(cfg)
    return cfg


def read_run_config(path: str | Path) -> TrainConfig:
    """The typed config a run saved (`<output_dir>/config.yaml`); ConfigError on an unknown key or a bad type.

    Not re-validated: the run was validated when it started, and its paths (data, DeepSpeed JSON) may
    not exist where it is analysed. A key the file lacks takes today's default, as the trainer would.
    """
    return build_config(path)


def t_range(value: Any, key: str) -> tuple[float, float]:
    """A mask-rate setting as (lo, hi); ConfigError naming `key`.

    A fixed rate must satisfy 0 < t <= 1; a range [lo, hi] with lo < hi may start at 0 (eq. 2's
    t ~ U(0, 1): a draw of exactly 0 has probability 0, and `forward_mask` masks at least one token).
    """
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"{key}: expected a number or [lo, hi], got {value!r}")
        lo, hi = (_coerce(v, float, key) for v in value)
    else:
        lo = hi = _coerce(value, float, key)
    if not (0.0 < lo <= hi <= 1.0 or 0.0 == lo < hi <= 1.0):
        raise ConfigError(f"{key}: mask rates must satisfy 0 < t <= 1, or 0 <= lo < hi <= 1 for a range; "
                          f"got {value!r}")
    return lo, hi


def _choice(value: Any, allowed: tuple, key: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(str, allowed))}")


def _plugin_name(value: str, kind: str, key: str) -> None:
    """ConfigError naming `key` unless a loaded plug-in resolves `value` for `kind` ('model' or 'data')."""
    try:
        plugins.check(value, kind)
    except plugins.PluginError as err:
        raise ConfigError(f"{key}: {err}") from None


def _at_least(value: float, low: float, key: str) -> None:
    if value < low:
        raise ConfigError(f"{key}: must be >= {low}, got {value!r}")


def validate(cfg: TrainConfig) -> None:
    """The one check of every value; raises ConfigError naming the key and the allowed values.

    A plug-in name (`toy:llada`) is recognised by its form; its plug-in (loaded through
    `dllm_jepa_train.plugins`) lists the allowed names, and a prefix no plug-in registers is an error.
    """
    _choice(cfg.model.family, MODEL_FAMILIES, "model.family")
    if not cfg.model.pretrained:
        raise ConfigError("model.pretrained: required: a local checkpoint dir, a hub id, or a plug-in name "
                          "(<prefix>:<name>, e.g. toy:llada)")
    if plugins.plugin_prefix(cfg.model.pretrained) is not None:
        _plugin_name(cfg.model.pretrained, "model", "model.pretrained")
    for key in ("hidden_size", "num_layers", "num_heads"):
        _at_least(getattr(cfg.tiny, key), 1, f"tiny.{key}")
    if cfg.tiny.hidden_size % cfg.tiny.num_heads:
        raise ConfigError(f"tiny.hidden_size ({cfg.tiny.hidden_size}) must be a multiple of tiny.num_heads")
    _at_least(cfg.tiny.vocab_size, 300, "tiny.vocab_size")  # byte alphabet (256) plus specials and merges
    is_plugin_data = plugins.plugin_prefix(cfg.data.source) is not None
    if is_plugin_data:
        _plugin_name(cfg.data.source, "data", "data.source")
    elif cfg.data.source not in DATA_SOURCES:
        raise ConfigError(f"data.source: {cfg.data.source!r} is not allowed; allowed values: "
                          f"{', '.join(DATA_SOURCES)}, or a plug-in name (<prefix>:<name>, e.g. toy:gsm8k)")
    _choice(cfg.data.split, SPLITS, "data.split")
    if cfg.data.source == "jsonl" and not cfg.data.path:
        raise ConfigError("data.path: required when data.source is jsonl")
    if cfg.data.source == "text" and not (cfg.data.path or cfg.data.data_dir):
        raise ConfigError("data.path: required when data.source is text (or data.data_dir with text/, or toy:text)")
    if is_plugin_data and (cfg.data.data_dir or cfg.data.path):
        raise ConfigError(f"data.data_dir / data.path: must be empty with data.source {cfg.data.source} "
                          f"(its plug-in writes the data to <output_dir>/{plugins.DATA_DIR})")
    if cfg.data.generate_scale <= 0:
        raise ConfigError(f"data.generate_scale: must be > 0, got {cfg.data.generate_scale}")
    _at_least(cfg.data.max_length, 8, "data.max_length")
    _at_least(cfg.data.max_rows, 0, "data.max_rows")
    _at_least(cfg.data.dev_rows, 0, "data.dev_rows")
    if cfg.data.dev_rows and (plugins.data_source(cfg.data.source) != "gsm8k" or cfg.data.split != "train"):
        raise ConfigError("data.dev_rows: only for data.source gsm8k, split train (the other tasks have a "
                          "validation split to select on)")
    t_range(cfg.diffusion.t_context, "diffusion.t_context")
    t_range(cfg.jepa.t_target, "jepa.t_target")
    _choice(cfg.diffusion.loss_norm, LOSS_NORMS, "diffusion.loss_norm")
    _at_least(cfg.jepa.lambda_, 0.0, "jepa.lambda")
    _at_least(cfg.jepa.predictor_depth, 0, "jepa.predictor_depth")
    _at_least(cfg.jepa.predictor_heads, 0, "jepa.predictor_heads")
    if cfg.jepa.predictor_mlp_ratio <= 0:
        raise ConfigError(f"jepa.predictor_mlp_ratio: must be > 0, got {cfg.jepa.predictor_mlp_ratio}")
    if not 0.0 <= cfg.jepa.ema_decay < 1.0:
        raise ConfigError(f"jepa.ema_decay: must be in [0, 1), got {cfg.jepa.ema_decay}")
    _at_least(cfg.jepa.collapse_every, 0, "jepa.collapse_every")
    _at_least(cfg.jepa.collapse_window, 2, "jepa.collapse_window")
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
    _at_least(cfg.optim.global_batch_size, 0, "optim.global_batch_size")
    if cfg.optim.global_batch_size and cfg.optim.global_batch_size % cfg.optim.micro_batch_size:
        raise ConfigError(f"optim.global_batch_size ({cfg.optim.global_batch_size}) must be a multiple of "
                          f"optim.micro_batch_size ({cfg.optim.micro_batch_size})")
    _choice(cfg.run.engine, ENGINES, "run.engine")
    _choice(cfg.run.precision, PRECISIONS, "run.precision")
    _choice(cfg.run.zero_stage, ZERO_STAGES, "run.zero_stage")
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


def resolve_batch(cfg: TrainConfig, world_size: int) -> TrainConfig:
    """Set `optim.grad_accum` from `optim.global_batch_size` for `world_size` ranks (no-op when it is 0).

    global = world size x micro-batch x accumulation (the paper's 32 = 8 x 2 x 2); a world size that
    does not divide it is a ConfigError, raised before any model loads. Returns `cfg`.
    """
    target = cfg.optim.global_batch_size
    if not target:
        return cfg
    per_step = world_size * cfg.optim.micro_batch_size
    if world_size < 1 or target % per_step:
        raise ConfigError(
            f"optim.global_batch_size {target} cannot be split over {world_size} ranks x optim.micro_batch_size "
            f"{cfg.optim.micro_batch_size}: it must be a multiple of {per_step}; change the number of ranks, "
            "the micro-batch, or the global batch"
        )
    cfg.optim.grad_accum = target // per_step
    return cfg


def options() -> list[tuple[str, Any, str]]:
    """Every option as (`section.key`, default, help), in declaration order."""
    out = []
    for section in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(section.default_factory):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            out.append((f"{section.name}.{_key_name(f.name)}", default, f.metadata.get("help", "")))
    return out


def help_text() -> str:
    """One line per option: `--section.key` (default) and its help; what `main.py --help` prints."""
    lines = []
    for key, default, text in options():
        shown = json.dumps(list(default) if isinstance(default, tuple) else default)
        lines.append(f"  --{key} (default {shown})\n      {text}")
    return "\n".join(lines)


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
