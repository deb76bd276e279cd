"""Plug-in names: `model.pretrained` and `data.source` values of the form `<prefix>:<name>` (the toy
package's `toy:llada`, `toy:gsm8k`), resolved by code outside the production modules.

One mechanism loads that code: an installed distribution declares, in the entry-point group
`dllm_jepa.plugins` (GROUP), a callable that takes no argument and calls `register_resolver(prefix,
resolver)`. This project's pyproject.toml declares the toy package there, so an installed wheel carries it:

    [project.entry-points."dllm_jepa.plugins"]
    toy = "dllm_jepa_train.toy:register"

`resolve(name)` calls every entry point of the group once (`load_plugins`) and returns the resolver of
the name's prefix; a prefix no plug-in registered is a PluginError that names the group. The config's
validation, the run set-up (`build.py`), the sweep and the analysis commands reach plug-in code only
through this module, and it imports no plug-in itself. Whether a value is a plug-in name is decided by
its form alone (`plugin_prefix`): a lowercase prefix of two or more characters, a colon, a name; hub ids
(`org/model`) and ordinary paths do not have that form (write `./toy:x` for a folder named like one).

What a name stands for is written into the run folder, at fixed places (DATA_DIR, MODEL_DIR), so an
analysis of a finished run finds it there without running the plug-in again (its resolver still maps a
data name to its task: `data_source`).
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # annotations only: config.py imports this module
    from dllm_jepa_train.config import DataConfig, TinyConfig

GROUP = "dllm_jepa.plugins"
DATA_DIR = "data"  # <output_dir>/data: the data a plug-in data name stands for
MODEL_DIR = "base"  # <output_dir>/base: the checkpoint a plug-in model name stands for
KINDS = ("model", "data")  # model.pretrained, data.source

_NAME = re.compile(r"([a-z][a-z0-9_]+):(.+)")


class PluginError(ValueError):
    """A plug-in name cannot be resolved; the message names the entry-point group or the allowed names."""


class Resolver(Protocol):
    """What a plug-in does with the names under its prefix."""

    def names(self, kind: str) -> tuple[str, ...]:
        """Every full name (`toy:llada`) it resolves for `kind` ('model' or 'data')."""

    def data_source(self, name: str) -> str:
        """The ordinary data source a data name is read as once prepared ('toy:gsm8k' -> 'gsm8k')."""

    def prepare_data(self, name: str, out_dir: Path, data: DataConfig) -> None:
        """Write the data `name` stands for into `out_dir` in the task data layout (once; reused after)."""

    def prepare_model(self, name: str, out_dir: Path, corpus: list[str], tiny: TinyConfig) -> None:
        """Write the checkpoint `name` stands for into `out_dir` (once); `corpus` is the run's training text."""


_resolvers: dict[str, Resolver] = {}
_loaded: set[str] = set()  # entry points already called ("name = value")


def plugin_prefix(value: str) -> str | None:
    """'toy:gsm8k' -> 'toy'; a value not of the form `<prefix>:<name>` -> None (a string test only)."""
    match = _NAME.fullmatch(value)
    return match.group(1) if match else None


def register_resolver(prefix: str, resolver: Resolver) -> None:
    """Make `resolver` the one resolver of `<prefix>:` names; a prefix held by another resolver is an error."""
    if not _NAME.fullmatch(f"{prefix}:x"):
        raise PluginError(f"plug-in prefix {prefix!r}: expected lowercase letters, digits or _ (2+ characters)")
    held = _resolvers.get(prefix)
    if held is not None and held is not resolver:
        raise PluginError(f"plug-in prefix {prefix!r} is already registered ({type(held).__name__}); "
                          f"two plug-ins in entry-point group {GROUP} claim it")
    _resolvers[prefix] = resolver


def entry_points() -> list[importlib.metadata.EntryPoint]:
    """The entry points of GROUP in the installed distributions (tests replace this function)."""
    return list(importlib.metadata.entry_points(group=GROUP))


def load_plugins() -> list[str]:
    """Call each entry point of GROUP not called yet; return the names of those called now."""
    called = []
    for ep in entry_points():
        key = f"{ep.name} = {ep.value}"
        if key in _loaded:
            continue
        try:
            register = ep.load()
        except (ImportError, AttributeError) as err:
            raise PluginError(f"entry point {key} of group {GROUP} cannot be imported: {err}") from err
        register()
        _loaded.add(key)
        called.append(ep.name)
    return called


def resolve(name: str) -> Resolver:
    """The resolver of plug-in name `name` (plug-ins loaded first); PluginError naming the group if none."""
    prefix = plugin_prefix(name)
    if prefix is None:
        raise PluginError(f"{name!r} is not a plug-in name (<prefix>:<name>)")
    load_plugins()
    if prefix not in _resolvers:
        known = ", ".join(f"{p}:" for p in sorted(_resolvers)) or "none"
        raise PluginError(f"{name!r}: no plug-in resolves {prefix}: names (registered prefixes: {known}); a plug-in "
                          f"registers one from entry-point group {GROUP} of an installed package (this project's "
                          "own toy: names need it installed: pip install .)")
    return _resolvers[prefix]


def check(name: str, kind: str) -> None:
    """PluginError unless `name` is a name its plug-in resolves for `kind`, listing the allowed names."""
    allowed = resolve(name).names(kind)
    if name not in allowed:
        raise PluginError(f"{name!r} is not allowed; allowed values: {', '.join(allowed)}")


def data_source(source: str) -> str:
    """The data source `source` is read as: a plug-in data name's (loading plug-ins), else `source` itself."""
    return source if plugin_prefix(source) is None else resolve(source).data_source(source)
