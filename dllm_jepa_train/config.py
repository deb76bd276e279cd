"""Reading, validating and writing run configs, the one owner of them: dataclass defaults, then YAML files
(later ones win), then `--section.key value` overrides, which win over every file wherever they stand;
jsonargparse reads both. The trainer (`main.py`), the sweep and every analysis command read configs here:
`load_config` for a run about to start (validated), `read_run_config` for a finished run's `config.yaml`
(not re-validated: its paths may not exist on this machine). The options themselves (typed sections whose
fields carry their help, `cell` flag and allowed values) live in `dllm_jepa_train.options`, and every name
there is importable from here too. `validate` names the bad key and the allowed values. Values go through
the coercion llada_diffusion's model_args use; mask rates become (lo, hi) when read. `resolve_batch`
derives the accumulation from the global batch and world size (`engines.deepspeed_config` builds the
DeepSpeed JSON from the result). Nothing here imports torch: a bad config fails before any model loads.

    load_config("dllm_jepa_train/configs/tiny_jepa.yaml", ["--jepa.lambda", "0.5"])
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, DefaultHelpFormatter, Namespace

from dllm_jepa_train import plugins
from dllm_jepa_train.options import (
    ENGINES, FILE_SOURCES, LOSS_NORMS, MODEL_FAMILIES, PRECISIONS, ZERO_STAGES, AnchorConfig, ConfigError, DataConfig,
    DiffusionConfig, JepaConfig, LoraConfig, ModelConfig, OptimConfig, RunConfig, TinyConfig, TrainConfig,
    fields_by_key, key_name, recipe, runtime, t_range, t_setting)
from lm_eval_diffusion import task_registry
from lm_eval_diffusion.coerce import CoercionError, coerce

__all__ = [  # the sections are re-exported: callers import every config name from here
    "ENGINES", "FILE_SOURCES", "LOSS_NORMS", "MODEL_FAMILIES", "PRECISIONS", "ZERO_STAGES", "AnchorConfig",
    "ConfigError", "DataConfig", "DiffusionConfig", "JepaConfig", "LoraConfig", "ModelConfig", "OptimConfig",
    "RunConfig", "TinyConfig", "TrainConfig", "as_written", "build_parser", "data_sources",
    "fields_by_key", "load_config", "parse_args", "read_run_config", "recipe", "resolve_batch", "runtime",
    "save_config", "t_range", "t_setting", "to_dict", "validate"]

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
            **{f.name: ns[section.name][key_name(f.name)] for f in dataclasses.fields(section.default_factory)})
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
        out[f.name] = {key_name(k): as_written(f"{f.name}.{key_name(k)}", v) for k, v in section.items()}
    return out


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as YAML (loadable again with `load_config`)."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
