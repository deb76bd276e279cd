"""Registers `llada_diffusion` and this project's task folder with lm-eval 0.4.13 at import time.

lm-eval 0.4.13 discovers no model plugins, so a `.pth` file installed with the wheel imports this
module at interpreter start. It costs one meta-path finder: nothing heavy is imported until lm-eval
itself is. It is a top-level module, not part of `lm_eval_diffusion`, so that importing it at start-up
does not pin the installed copy of the package ahead of a checkout that comes first on sys.path. Registration happens *after* `lm_eval.models` has loaded, because `get_model` only fills
the registry with the built-in models when it finds it empty.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Callable

_TARGET = "lm_eval_diffusion.harness:DiffusionLM"


def _register_models(_module: object) -> None:
    from lm_eval.api.registry import model_registry

    from lm_eval_diffusion import MODEL_NAMES

    for name in MODEL_NAMES:
        if name not in model_registry:
            model_registry.register(name, target=_TARGET)


def _add_task_folder(module: object) -> None:
    from lm_eval_diffusion import tasks_dir

    manager_cls = module.TaskManager
    if getattr(manager_cls.__init__, "_dllm_jepa_wrapped", False):
        return
    original_init = manager_cls.__init__
    folder = str(tasks_dir())

    def __init__(self, *args, include_path=None, **kwargs):
        paths = [] if include_path is None else (
            list(include_path) if isinstance(include_path, (list, tuple)) else [include_path]
        )
        if folder not in [str(p) for p in paths]:
            paths.append(folder)
        original_init(self, *args, include_path=paths, **kwargs)

    __init__._dllm_jepa_wrapped = True
    manager_cls.__init__ = __init__


_POST_IMPORT: dict[str, Callable[[object], None]] = {
    "lm_eval.models": _register_models,
    "lm_eval.tasks.manager": _add_task_folder,
}


class _PostImportLoader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader, hook: Callable[[object], None]) -> None:
        self._wrapped = wrapped
        self._hook = hook

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module) -> None:
        self._wrapped.exec_module(module)
        self._hook(module)


class _PostImportFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        hook = _POST_IMPORT.get(fullname)
        if hook is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PostImportLoader(spec.loader, hook)
        return spec


def install() -> None:
    """Install the finder once; run the hooks now for modules that are already imported."""
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
    for name, hook in _POST_IMPORT.items():
        if name in sys.modules:
            hook(sys.modules[name])


install()
