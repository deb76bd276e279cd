"""Typed training config, the one owner of run configs: dataclass defaults, then YAML files (later ones
win), then `--section.key value` overrides, which win over every file wherever they stand; jsonargparse
reads both. The trainer (`main.py`), the sweep and every analysis command read configs here: `load_config`
for a run about to start (validated), `read_run_config` for a finished run's `config.yaml` (not
re-validated: its paths may not exist on this machine). Each option is a field made by `recipe` (it
changes what a run learns) or `runtime` (it does not), whose metadata holds its help, that `cell` flag and
its allowed values; `validate` names the bad key and the allowed values. Values go through the coercion
llada_diffusion's model_args use; mask rates become (lo, hi) when read. `resolve_batch` derives the
accumulation from the global batch and world size (`engines.deepspeed_config` builds the DeepSpeed JSON
from the result). Nothing here imports torch: a bad config fails before any model loads.

    load_config("dllm_jepa_train/configs/tiny_jepa.yaml", ["--jepa.lambda", "0.5"])
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace

from dllm_jepa_train import plugins
from lm_eval_diffusion import FAMILIES
from lm_eval_diffusion import task_registry
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


def _key_name(name: str) -> str:
    """Dataclass field -> YAML/CLI key (`lambda` is a Python keyword, so the field is `lambda_`)."""
    return "lambda" if name == "lambda_" else name


@functools.cache
def fields_by_key() -> tuple[tuple[str, dataclasses.Field, Any], ...]:
    """Every option as (`section.key`, its dataclass field, its type), in declaration order."""
    return tuple((f"{section.name}.{_key_name(f.name)}", f, typing.get_type_hints(section.default_factory)[f.name])
                 for section in dataclasses.fields(TrainConfig) for f in dataclasses.fields(section.default_factory))


def _value_type(key: str, f: dataclasses.Field, hint: Any) -> Any:
    """The parser's type of one option: a command-line string reads as YAML ("1e-5", "[0.1, 0.3]"; a file's
    value arrives typed), then goes through the field's `parse` or the shared coercion."""
    def parse(value: Any) -> Any:
        try:
            if isinstance(value, str) and hint is not str and value.strip():
                value = yaml.safe_load(value)
            return f.metadata["parse"](value, key) if f.metadata["parse"] else coerce(value, hint, key)
        except (CoercionError, ConfigError, yaml.YAMLError) as err:
            raise argparse.ArgumentTypeError(str(err)) from None  # argparse keeps this type's message
    return parse


def as_written(key: str, value: Any) -> Any:
    """A field's value as config files write it (mask rates as a number when fixed, tuples as lists)."""
    if key in ("diffusion.t_context", "jepa.t_target"):
        return t_setting(t_range(value, key))  # also takes a plain number assigned in code
    return list(value) if isinstance(value, tuple) else value


@functools.cache  # about 15 ms to build; the sweep reads one config per cell
def build_parser(description: str = "", formatter_class: type = DefaultHelpFormatter) -> ArgumentParser:
    """The command line of a run: repeated `--config FILE`, `--dry-run`, and one `--section.key` per option."""
    parser = ArgumentParser(prog="main.py", description=description, formatter_class=formatter_class,
                            usage="%(prog)s --config FILE.yaml [--config OVERRIDES.yaml ...] [--dry-run] "
                                  "[--section.key value ...]", exit_on_error=False, allow_abbrev=False,
                            print_config=None)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML config file; repeat it to layer files "
                        "(later ones win); --section.key overrides win over every file")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--local_rank", type=int, help=argparse.SUPPRESS)  # the deepspeed launcher's; unused
    for key, f, hint in fields_by_key():
        parser.add_argument(f"--{key}", type=_value_type(key, f, hint), default=f.default, help=f.metadata["help"])
    return parser


def _config_error(err: Exception) -> ConfigError:
    """jsonargparse's error in this module's words: an unknown name lists the allowed ones."""
    text = str(err).strip()
    unknown = re.match(r"unrecognized arguments: (--[^\s=]+|\S+)|Option '(\S+)' is not accepted", text, re.I)
    if unknown is None:  # a value's own error names its key
        return ConfigError(re.sub(r"^argument --(\S+): (\1: )?", r"\1: ", text))
    name = unknown.group(1) or unknown.group(2)
    section, _, key = name.removeprefix("--").partition(".")
    sections = [f.name for f in dataclasses.fields(TrainConfig)]
    if unknown.group(1) and not (name.startswith("--") and key):
        return ConfigError(f"argument {name!r}: overrides must look like --section.key value (e.g. --jepa.lambda 0.5)")
    if section not in sections:
        return ConfigError(f"unknown config section {section!r}; allowed sections: {', '.join(sections)}")
    allowed = ", ".join(k for k, _, _ in fields_by_key() if k.startswith(f"{section}."))
    return ConfigError(f"unknown config key {section}.{key!r}; allowed keys: {allowed}")


def _check_file(path: Path) -> None:
    """ConfigError naming `path` when it is missing, not YAML, or not a mapping (jsonargparse's say no file)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {data!r}")


def parse_args(argv: list[str], parser: ArgumentParser | None = None) -> tuple[TrainConfig, Namespace]:
    """A command line -> (its config, not validated; the parsed namespace, e.g. `dry_run`); ConfigError.

    jsonargparse applies arguments left to right: the `--config` files go first, so an override wins over
    every file wherever it stands (`--jepa.lambda 1 --config a.yaml` keeps lambda 1)."""
    files = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    files.add_argument("--config", action="append", default=[])
    known = Namespace(config=[])
    try:
        known, rest = files.parse_known_args(argv)
        ns = (parser or build_parser()).parse_args([a for path in known.config for a in ("--config", path)] + rest)
    except (argparse.ArgumentError, argparse.ArgumentTypeError) as err:
        for path in known.config:
            _check_file(Path(path))
        raise _config_error(err) from None
    sections = {}
    for section in dataclasses.fields(TrainConfig):
        if not isinstance(ns[section.name], Namespace):  # jsonargparse takes a file's `optim: 1` as a value
            raise ConfigError(f"config section {section.name!r} must be a mapping of keys, got {ns[section.name]!r}")
        sections[section.name] = section.default_factory(
            **{f.name: ns[section.name][_key_name(f.name)] for f in dataclasses.fields(section.default_factory)})
    return TrainConfig(**sections), ns


def load_config(paths: str | Path | list | tuple | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file(s) at `paths` (later ones win), then `--section.key value` overrides; validated."""
    paths = [] if paths is None else [paths] if isinstance(paths, (str, Path)) else paths
    cfg, _ = parse_args([a for path in paths for a in ("--config", str(path))] + list(overrides or []))
    validate(cfg)
    return cfg


def read_run_config(path: str | Path) -> TrainConfig:
    """The typed config a run saved (`<output_dir>/config.yaml`); ConfigError on an unknown key or a bad type.

    Not re-validated: the run was validated when it started, and its paths (data, DeepSpeed JSON) may not
    exist where it is analysed. A key the file lacks takes today's default, as the trainer would."""
    return parse_args(["--config", str(path)])[0]


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


def data_sources() -> tuple[str, ...]:
    """The allowed non-plug-in data.source values: the registered training tasks, then the file sources."""
    return task_registry.task_names(training_only=True) + FILE_SOURCES


def _check_task_options(data: DataConfig, source: str) -> None:
    """A task's own data option set to anything but its default: the source must be a task declaring it,
    and that task's check must pass (GSM8K: data.dev_rows only on split train)."""
    for key, owners in task_registry.data_option_owners().items():
        option = next(o for o in owners[0].data_options if o.key == key)
        if not hasattr(data, key):
            raise ConfigError(f"task {owners[0].name} ({owners[0].origin}) declares data option {key!r}, which is "
                              "no key of config section data")
        value = getattr(data, key)
        if value == option.default:
            continue
        spec = next((s for s in owners if s.name == source), None)
        allowed = " | ".join(s.name for s in owners)
        try:
            if spec is None:
                raise ValueError("the other sources do not use it")
            next(o for o in spec.data_options if o.key == key).check(value, data.split)
        except ValueError as err:
            raise ConfigError(f"data.{key}: only for data.source {allowed}; {err}") from None


def validate(cfg: TrainConfig) -> None:
    """The one check of every value but mask rates (checked as read); ConfigError naming key and allowed values.

    A plug-in name (`toy:llada`) is recognised by its form; its plug-in (loaded through
    `dllm_jepa_train.plugins`) lists the allowed names, and a prefix no plug-in registers is an error.
    The task registry decides data.source and data.split once `data.task_modules` are imported.
    """
    for key, f, _ in fields_by_key():
        value = getattr(getattr(cfg, key.split(".")[0]), f.name)
        if f.metadata["choices"]:
            _choice(value, f.metadata["choices"], key)
        if f.metadata["at_least"] is not None:
            _at_least(value, f.metadata["at_least"], key)
    if not cfg.model.pretrained:
        raise ConfigError("model.pretrained: required: a local checkpoint dir, a hub id, or a plug-in name "
                          "(<prefix>:<name>, e.g. toy:llada)")
    if plugins.plugin_prefix(cfg.model.pretrained) is not None:
        _plugin_name(cfg.model.pretrained, "model", "model.pretrained")
    if cfg.tiny.hidden_size % cfg.tiny.num_heads:
        raise ConfigError(f"tiny.hidden_size ({cfg.tiny.hidden_size}) must be a multiple of tiny.num_heads")
    try:
        task_registry.load_task_modules(cfg.data.task_modules)
    except ValueError as err:
        raise ConfigError(f"data.task_modules: {err}") from None
    _choice(cfg.data.split, task_registry.all_splits(), "data.split")
    is_plugin_data = plugins.plugin_prefix(cfg.data.source) is not None
    if is_plugin_data:
        _plugin_name(cfg.data.source, "data", "data.source")
    elif cfg.data.source not in data_sources():
        raise ConfigError(f"data.source: {cfg.data.source!r} is not allowed; allowed values: "
                          f"{', '.join(data_sources())}, or a plug-in name (<prefix>:<name>, e.g. toy:gsm8k)")
    if cfg.data.source == "jsonl" and not cfg.data.path:
        raise ConfigError("data.path: required when data.source is jsonl")
    if cfg.data.source == "text" and not (cfg.data.path or cfg.data.data_dir):
        raise ConfigError("data.path: required when data.source is text (or data.data_dir with text/, or toy:text)")
    if is_plugin_data and (cfg.data.data_dir or cfg.data.path):
        raise ConfigError(f"data.data_dir / data.path: must be empty with data.source {cfg.data.source} "
                          f"(its plug-in writes the data to <output_dir>/{plugins.DATA_DIR})")
    if cfg.data.generate_scale <= 0:
        raise ConfigError(f"data.generate_scale: must be > 0, got {cfg.data.generate_scale}")
    _check_task_options(cfg.data, plugins.data_source(cfg.data.source))
    if cfg.jepa.predictor_mlp_ratio <= 0:
        raise ConfigError(f"jepa.predictor_mlp_ratio: must be > 0, got {cfg.jepa.predictor_mlp_ratio}")
    if not 0.0 <= cfg.jepa.ema_decay < 1.0:
        raise ConfigError(f"jepa.ema_decay: must be in [0, 1), got {cfg.jepa.ema_decay}")
    if cfg.lora.dropout >= 1.0:
        raise ConfigError(f"lora.dropout: must be in [0, 1), got {cfg.lora.dropout}")
    if cfg.optim.lr <= 0:
        raise ConfigError(f"optim.lr: must be > 0, got {cfg.optim.lr}")
    if not all(0.0 <= b < 1.0 for b in cfg.optim.betas):
        raise ConfigError(f"optim.betas: each must be in [0, 1), got {list(cfg.optim.betas)}")
    if not 0.0 <= cfg.optim.warmup_ratio < 1.0:
        raise ConfigError(f"optim.warmup_ratio: must be in [0, 1), got {cfg.optim.warmup_ratio}")
    if cfg.optim.global_batch_size and cfg.optim.global_batch_size % cfg.optim.micro_batch_size:
        raise ConfigError(f"optim.global_batch_size ({cfg.optim.global_batch_size}) must be a multiple of "
                          f"optim.micro_batch_size ({cfg.optim.micro_batch_size})")
    if cfg.run.deepspeed_config and cfg.run.engine != "deepspeed":
        raise ConfigError("run.deepspeed_config: only used with run.engine deepspeed")
    if cfg.run.deepspeed_config and not Path(cfg.run.deepspeed_config).is_file():
        raise ConfigError(f"run.deepspeed_config: file {cfg.run.deepspeed_config} does not exist")
    if not cfg.run.output_dir:
        raise ConfigError("run.output_dir: must not be empty")


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


def to_dict(cfg: TrainConfig) -> dict:
    """The config as plain YAML-able data, spelled as config files write it (`lambda`, mask rates)."""
    out = {}
    for f in dataclasses.fields(cfg):
        section = dataclasses.asdict(getattr(cfg, f.name))
        out[f.name] = {_key_name(k): as_written(f"{f.name}.{_key_name(k)}", v) for k, v in section.items()}
    return out


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with `load_config`)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
