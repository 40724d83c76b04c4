"""Constructor options checked against the constructor's type hints before a network is built.

Options come from JSON and YAML (a checkpoint's ``config``, a run config's ``model.options``), where
``"maybe"`` for a flag or ``"16"`` for a count parse fine and then fail deep inside a forward pass, or
silently change behaviour (any non-empty string is true). Checking them against the annotations of the
class's ``__init__`` turns that into one line naming the option, the type it needs and what it got.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from stereodistill.config import keyword_parameters
from stereodistill.errors import ConfigError


def plain_value(value: Any) -> Any:
    """NumPy scalars and arrays (from a sweep script, say) as the Python numbers and lists the networks
    and JSON take."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    if isinstance(value, list | tuple):
        return type(value)(plain_value(v) for v in value)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # a bool is a flag, never a count


def _fits(hint: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``hint``; ``None`` for a hint this check does not know (not checked)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(arg, value) for arg in args]
        return None if None in verdicts else any(verdicts)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return _is_int(value) or isinstance(value, float)
    if hint is str:
        return isinstance(value, str)
    if origin in (Sequence, list, tuple) and len(args) in (1, 2) and args[0] is int:
        return isinstance(value, list | tuple) and all(_is_int(v) for v in value)
    return None


def _describe(hint: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)] if typing.get_args(hint) else [hint]
    if len(args) == 1 and args[0] in names:
        return names[args[0]]
    if len(args) == 1 and typing.get_origin(args[0]) in (Sequence, list, tuple):
        return "a list of integers"
    return str(hint)


def checked_options(cls: type, arch: str, options: Mapping[str, Any], extra: Sequence[str] = ()) -> dict[str, Any]:
    """``options`` with NumPy values made Python ones; :class:`ConfigError` for an option ``cls``
    does not take or a value of the wrong type (the parameters and hints as
    :func:`~stereodistill.config.keyword_parameters` reads them). ``extra`` names the options every
    network takes besides its constructor's, listed among the valid ones."""
    options = {name: plain_value(value) for name, value in options.items()}
    found = keyword_parameters(cls)
    if found is None:  # it takes any keyword: nothing to check against
        return options
    params, hints = found
    unknown = sorted(set(options) - set(params))
    if unknown:
        valid = ", ".join((*params, *extra))
        raise ConfigError(f"{arch}: unknown option {', '.join(map(repr, unknown))}; valid: {valid}")
    for name, value in options.items():
        if name in hints and _fits(hints[name], value) is False:
            raise ConfigError(f"{arch}: option {name} must be {_describe(hints[name])}, got {value!r}")
    return options
