"""Typed configuration: YAML → dataclasses, validated before any work starts.

An unknown key is an error that names it and the nearest valid key; a value of the wrong type names
the key (as a dotted path) and the expected type. ``key.sub=value`` overrides from the command line
are applied to the raw mapping first, so they are validated the same way. The resolved config
(:func:`to_dict`) is what a run saves beside its outputs.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

import yaml

from stereodistill.errors import ConfigError
from stereodistill.fileio import parse_problem

T = TypeVar("T")


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: plain YAML keeps the last one
    silently, so a second ``steps:`` or ``data:`` block would replace the first unseen."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base``: its keys may be given again
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                continue  # unhashable: the base loader says so
            if key in first:
                line = key_node.start_mark.line + 1
                earlier = f" (first at line {first[key]})" if first[key] != line else ""
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice{earlier}", key_node.start_mark
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file does not exist")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({parse_problem(exc, located=True)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` items (value parsed as YAML) to a nested mapping, returning a copy;
    ``distill.terms.NAME.KEY=value`` reaches into a term by its name (:func:`set_dotted`)."""
    import copy

    data = copy.deepcopy(data)
    given: dict[str, str] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not KEY=VALUE")
        if key.strip() in given:  # as a key given twice in a file: one of them would be dropped unsaid
            raise ConfigError(f"override {key.strip()} is given twice ({given[key.strip()]!r}, {item!r}): give it once")
        given[key.strip()] = item
        try:
            value = yaml.load(text, Loader=_UniqueKeyLoader) if text.strip() else None  # a safe loader
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: value is not valid YAML ({parse_problem(exc, located=False)})"
            ) from None
        set_dotted(data, key.strip(), value, f"override {item!r}")
    return data


def _item_where(where: str, index: int, item: Any) -> str:
    """How a message names a list item: by its name where it has one that is a word (a distillation
    term, a stage: as overrides address it), else by its position."""
    name = item.get("name") if isinstance(item, Mapping) else None
    return f"{where}.{name}" if isinstance(name, str) and name and not name.isdigit() else f"{where}[{index}]"


def merge_mappings(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive merge of nested mappings (copies); ``extra`` wins."""
    import copy

    merged = copy.deepcopy(dict(base))
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_mappings(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def set_dotted(data: dict[str, Any], key: str, value: Any, where: str) -> None:
    """Set a dotted key in nested mappings, creating them as needed. A list of named items (the
    distillation terms) is addressed by an item's ``name``, never by position. The one override
    grammar of command-line overrides, ablation choices and budgets."""
    import copy

    parts = key.split(".")
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):  # a list of named items: find the one named
            match = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not match:
                names = ", ".join(str(item.get("name")) for item in node if isinstance(item, dict))
                raise ConfigError(f"{where}: {key}: no term named {part!r} (terms: {names})")
            node = match[0]
            continue
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict | list):
            raise ConfigError(f"{where}: {key}: {part!r} is not a mapping")
        node = child
    if isinstance(node, list):
        raise ConfigError(f"{where}: {key}: name a term after 'distill.terms'")
    node[parts[-1]] = copy.deepcopy(value)


def check_steps(steps: Any, where: str) -> int:
    """A step count read before the run config is typed (it is scaled first): a whole number >= 1."""
    if not (isinstance(steps, int) and not isinstance(steps, bool) and steps >= 1):
        raise ConfigError(f"{where}: 'steps' must be a whole number of at least 1, got {steps!r}")
    return steps


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple, Sequence):
        args = get_args(tp)
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, Mapping):
        return "mapping"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        # Try dataclasses and containers last so that plain scalars match plain types first.
        for arg in sorted(args, key=lambda a: dataclasses.is_dataclass(a) or get_origin(a) is not None):
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in get_args(tp):
            close = difflib.get_close_matches(str(value), [str(a) for a in get_args(tp)], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping ({tp.__name__}), got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        # An item with a name (a distillation term, a stage) is named by it, as overrides address it.
        converted = [_convert(v, item, _item_where(where, i, v)) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        args = get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): _convert(v, item, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 (PyYAML) reads 1e-3 (no dot) as text
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            # YAML reads 123, yes, 1.50 or 2024-01-01 as a number, a flag or a date: quoted ("'123'" on a
            # command line), it stays text
            kind = "a date" if isinstance(value, datetime.date) else "a number or a flag"
            scalar = isinstance(value, bool | int | float | datetime.date)
            quoted = f" (YAML read it as {kind}: quote it to keep it text)" if scalar else ""
            raise ConfigError(f"{where}: expected a string, got {value!r}{quoted}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, validating every key and value."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {path!r}{hint} (valid here: {', '.join(fields)})")
        kwargs[key] = _convert(value, hints[key], path)
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"missing required key(s): {', '.join(prefix + m for m in missing)}")
    try:
        return cls(**kwargs)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain YAML/JSON-able data."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _parameter_hint(function: Any, name: str) -> Any:
    """The resolved type hint of one parameter of ``function``, or ``None`` where it has none or it
    cannot be resolved at run time (a name only a type checker imports): that parameter goes
    unchecked, and the others still are."""
    annotation = inspect.get_annotations(function).get(name)
    if annotation is None:
        return None
    holder = types.SimpleNamespace(__annotations__={name: annotation})
    try:
        return typing.get_type_hints(holder, globalns=getattr(function, "__globals__", {}))[name]
    except Exception:  # NameError, AttributeError, SyntaxError, TypeError: whatever the hint's text raises
        return None


def keyword_parameters(target: Any, skip: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The keyword parameters ``target`` takes (a function, or a class's ``__init__`` and, where it
    passes ``**kwargs`` on, its bases' along the MRO): name → :class:`inspect.Parameter`, and their
    resolvable type hints. None when it takes any keyword (nothing to check against)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    functions = [c.__init__ for c in target.__mro__ if "__init__" in vars(c)] if isinstance(target, type) else [target]
    params: dict[str, Any] = {}
    hints: dict[str, Any] = {}
    for function in functions:
        signature = inspect.signature(function)
        for name, param in signature.parameters.items():
            if param.kind in kinds and name not in ("self", *skip) and name not in params:
                params[name] = param
                hint = _parameter_hint(function, name)
                if hint is not None:
                    hints[name] = hint
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
            return params, hints
    return None


def keyword_options(
    target: Any, options: Mapping[str, Any], where: str, skip: Sequence[str] = (), also: Sequence[str] = ()
) -> dict[str, Any]:
    """``options`` checked against the keyword parameters of ``target`` (:func:`keyword_parameters`)
    before any work: an unknown name is an error naming the nearest valid one, and each value is
    converted to its annotated type (a wrong type is an error naming the key). ``also`` names options
    the caller takes besides ``target``'s: valid, passed on as given, for the caller to check."""
    found = keyword_parameters(target, skip)
    if found is None:
        return dict(options)  # takes anything: nothing to check against
    params, hints = [*found[0], *also], found[1]
    checked = {}
    for key, value in options.items():
        if key not in params:
            close = difflib.get_close_matches(str(key), params, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            valid = ", ".join(params) or "none"
            raise ConfigError(f"{where}: unknown option {key!r}{hint}; valid options: {valid}")
        try:
            checked[key] = _convert(value, hints[key], f"{where}.{key}") if key in hints else value
        except TypeError:  # an annotation _convert does not handle: the value goes through as given
            checked[key] = value
    return checked
