"""The task registry: what the toolkit knows about each task, one `TaskSpec` per task, looked up by name.

A task's module builds its spec (data loading and splits, prompt text and target, scoring hooks, the
lm-eval task names a sweep evaluates it with, its own `data.*` options); `task_data`, `prompts`, the
trainer's data source and config validation, `sweep` and the task YAMLs' `utils.py` read it here.

    built-in   lm_eval_diffusion/task_defs/<task>.py define SPEC; BUILTIN_MODULES below lists them, and
               the registry registers them the first time any name is looked up
    outside    a module anywhere calls `register_task(spec)` when imported: lm-eval imports a task's
               utils.py through the YAML's `!function`, the trainer, sweep and analysis import the same
               file by path from `data.task_modules` (`load_task_modules`), before validating a config
    extras     other packages attach facts of their own to a task (`attach`): the toy plug-in its toy data
               and demo defaults, when the `dllm_jepa.plugins` entry points load it (toy -> registry)

Nothing here imports torch, lm-eval or a task module at import time.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

BUILTIN_MODULES = tuple(f"lm_eval_diffusion.task_defs.{name}" for name in ("gsm8k", "spider", "nlrx", "django", "mmlu"))

# A loader: (split, local data root or None for the hub, task options) -> docs. The options are the
# data config's fields for the trainer and the task metadata for lm-eval (`data_dir`, `spider_db_dir`, ...).
Loader = Callable[[str, "Path | None", Mapping[str, Any]], list]


@dataclass(frozen=True)
class DataOption:
    """A task's own `data.<key>` option (the key is declared in the trainer's DataConfig): when it is set
    to anything but its default, `check(value, split)` raises ValueError if the task cannot use it."""

    key: str
    check: Callable[[Any, str], None] = lambda value, split: None
    default: Any = None  # the DataConfig default: a value equal to it is "not set"


@dataclass(frozen=True)
class TaskSpec:
    """Everything one task contributes; see lm_eval_diffusion/task_defs/gsm8k.py for a complete one."""

    name: str  # the data.source name and the key of every lookup (gsm8k)
    splits: tuple[str, ...]  # the splits it has, train first where it has one
    load: Loader  # docs of one split (task_data.load_docs checks the name and split first)
    text: Callable[[dict], str]  # a doc's prompt, ending where the answer starts (prompts.doc_to_text)
    target: Callable[[dict], str]  # its gold answer, without the target delimiter (prompts.doc_to_target)
    eval_tasks: tuple[str, ...] = ()  # lm-eval tasks scoring it, the sweep's default first (gsm8k_dllm)
    is_training_source: bool = True  # allowed as data.source (MMLU, a sanity check, is not)
    hub: tuple[str, str | None] | None = None  # (dataset, config) on the Hugging Face hub, if any
    download_hint: str = ""  # what to download and where to put it, for error messages
    # Named scoring hooks the task's YAML reaches through its utils.py (process_results, filters).
    metrics: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    data_options: tuple[DataOption, ...] = ()  # its own data.* options and their checks
    # The splits lm-eval reads, {split: docs}, from (data_dir, options); None: every split, loaded whole.
    lm_eval_splits: Callable[[Any, Mapping[str, Any]], dict[str, list]] | None = None
    origin: str = ""  # the file that defined it (set by register_task)

    @property
    def heldout_split(self) -> str:
        """Its first split other than train (gsm8k: test; spider, nlrx, django: validation)."""
        return next(s for s in self.splits if s != "train")


_tasks: dict[str, TaskSpec] = {}
_extras: dict[str, dict[str, Any]] = {}
_loaded_paths: dict[str, str] = {}  # resolved file -> module name it was imported as
_builtins_loaded = False


def _origin(spec: TaskSpec) -> str:
    code = getattr(spec.load, "__code__", None)
    return spec.origin or (code.co_filename if code is not None else repr(spec.load))


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add `spec` under its name; the same file registering it again replaces it, another file is an error."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", spec.name):
        raise ValueError(f"task name {spec.name!r}: expected lowercase letters, digits or _ (not a plug-in name)")
    if not spec.splits:
        raise ValueError(f"task {spec.name!r}: give at least one split")
    origin = _origin(spec)
    held = _tasks.get(spec.name)
    if held is not None and held.origin != origin:
        raise ValueError(f"task {spec.name!r} is already registered by {held.origin}; {origin} registers it again")
    _tasks[spec.name] = spec if spec.origin else replace(spec, origin=origin)
    return _tasks[spec.name]


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in BUILTIN_MODULES:
        register_task(importlib.import_module(module).SPEC)


def load_task_modules(paths: tuple[str, ...] | list[str] = ()) -> list[str]:
    """Import each task module file in `paths` once (each registers its tasks); the module names imported now.

    A path is imported under a name made from its folder and stem, so two `utils.py` files do not clash;
    a missing file or a module that fails to import is a ValueError naming the path.
    """
    _load_builtins()
    imported = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if str(path) in _loaded_paths:
            continue
        if not path.is_file():
            raise ValueError(f"task module {raw}: no such file")
        stem = f"{path.parent.name}_{path.stem}_{zlib.crc32(str(path).encode()):08x}"
        name = "dllm_jepa_task_" + re.sub(r"\W", "_", stem)
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise ValueError(f"task module {raw} failed to import: {type(err).__name__}: {err}") from err
        _loaded_paths[str(path)] = name
        imported.append(name)
    return imported


def task_names(training_only: bool = False) -> tuple[str, ...]:
    """Every registered task name in registration order (built-ins first); `training_only`: data.source ones."""
    _load_builtins()
    return tuple(name for name, spec in _tasks.items() if spec.is_training_source or not training_only)


def get_task(name: str) -> TaskSpec:
    """The spec registered under `name`; ValueError listing the registered names."""
    _load_builtins()
    if name not in _tasks:
        raise ValueError(f"unknown task {name!r}; expected one of {task_names()}")
    return _tasks[name]


def all_splits() -> tuple[str, ...]:
    """Every split some registered training task has, in first-seen order (train, test, validation)."""
    return tuple(dict.fromkeys(s for name in task_names(training_only=True) for s in _tasks[name].splits))


def data_option_owners() -> dict[str, list[TaskSpec]]:
    """{data option key: the registered tasks that declare it}."""
    owners: dict[str, list[TaskSpec]] = {}
    for name in task_names():
        for option in _tasks[name].data_options:
            owners.setdefault(option.key, []).append(_tasks[name])
    return owners


def attach(task: str, key: str, value: Any) -> None:
    """Record a fact another package keeps about `task` (the toy plug-in: key "toy"); replaces an earlier one."""
    _extras.setdefault(get_task(task).name, {})[key] = value


def extra(task: str, key: str, default: Any = None) -> Any:
    """A fact attached to `task` under `key`, else `default`."""
    return _extras.get(task, {}).get(key, default)


def tasks_with(key: str) -> tuple[str, ...]:
    """The registered tasks that have a fact attached under `key`, in registration order."""
    return tuple(name for name in task_names() if key in _extras.get(name, {}))
