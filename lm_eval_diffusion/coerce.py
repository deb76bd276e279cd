"""String-to-type coercion by a dataclass field's annotation: the one helper behind the trainer's config
(`dllm_jepa_train.config`: YAML values and `--section.key value` overrides) and `llada_diffusion`'s
`--model_args` (`model_args.DiffusionLMArgs`), so "1e-5", "true" and "None" mean the same in both.

Import-light (no torch): the trainer imports it before any model loads, and imports only go
trainer -> plugin.

    coerce("1e-5", float, "optim.lr")          # 1e-05 (YAML reads 1e-5 without a dot as a string)
    coerce("none", int | None, "mask_id")      # None
    coerce("8", int | str, "batch_size")       # 8; "auto" stays "auto"
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")


class CoercionError(ValueError):
    """A value does not fit its field's type; the message names the key and the expected type."""


def coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` (typed, or a string from a command line) as type `hint`; CoercionError naming `key`.

    Supported hints: bool, int, float, str, Any, tuple[T, ...] of fixed length, and unions of these
    (`T | None`, `int | str`), tried in their written order. "none"/"null" is None where None is allowed.
    An int accepts an integral number or string ("128", "128.0"), never a bool or 1.5.
    """
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if type(None) in options and (value is None or (isinstance(value, str)
                                                         and value.strip().lower() in ("none", "null"))):
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(value, option, key)
            except CoercionError as err:
                errors.append(str(err))
        raise CoercionError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if hint is Any:
        return value
    if value is None:
        raise CoercionError(f"{key}: cannot be None")
    if origin is tuple:
        kinds = typing.get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(kinds):
            raise CoercionError(f"{key}: expected a list of {len(kinds)} values, got {value!r}")
        return tuple(coerce(v, t, key) for v, t in zip(value, kinds))
    if hint is bool:
        if isinstance(value, bool):
            return value
        word = str(value).strip().lower()
        if word in TRUE_WORDS + FALSE_WORDS and not isinstance(value, float):
            return word in TRUE_WORDS
        raise CoercionError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        return _integer(value, key)
    if hint is float:
        if isinstance(value, bool) or isinstance(value, (dict, list, tuple)):
            raise CoercionError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise CoercionError(f"{key}: expected a number, got {value!r}") from None
    if hint is str:
        if isinstance(value, (dict, list, tuple)):
            raise CoercionError(f"{key}: expected a string, got {value!r}")
        return str(value)
    raise TypeError(f"unsupported field type {hint!r} for {key}")


def _integer(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CoercionError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, str):
        try:
            return int(value.strip())  # exact for large values, which float() would round
        except ValueError:
            pass
    try:
        number = float(value)
    except ValueError:
        raise CoercionError(f"{key}: expected an integer, got {value!r}") from None
    if not number.is_integer():
        raise CoercionError(f"{key}: expected an integer, got {value!r}")
    return int(value) if isinstance(value, int) else int(number)

