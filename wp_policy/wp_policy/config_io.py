"""Typed YAML configs: dataclass <-> dict conversion with errors that name the file and the field.

Every config in the project is a frozen dataclass; this module is the only place that turns YAML into one, so all
configs share one validation path (unknown keys, missing keys, wrong types) and one error format:
``ConfigError: configs/robots/libero.yaml: action.norm_mask: expected 7 values, got 6``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid. The message names the source file and the field path."""


def from_dict(cls: type[T], data: Any, source: str = "<dict>", path: str = "") -> T:
    """Build dataclass ``cls`` from ``data``, converting nested dataclasses, lists, tuples and Optionals.

    A key listed in the class's ``REMOVED_KEYS`` (key -> what replaced it) is an error that names its replacement.

    ``__post_init__`` validation errors (ValueError) are re-raised as ConfigError with the source and field path.
    """
    where = f"{source}: {path or '<root>'}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    removed = getattr(cls, "REMOVED_KEYS", {})  # key -> what replaced it (a config written for an older release)
    for key in sorted(set(data) & set(removed)):
        raise ConfigError(f"{source}: {f'{path}.' if path else ''}{key}: {removed[key]}")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: {sub}: required key is missing")
            continue
        kwargs[name] = _convert(hints[name], data[name], source, sub)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, source, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{source}: {path}: no variant matched: {errors}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {path}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, path)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {path}: expected a list, got {type(value).__name__} ({value!r})")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, source, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{source}: {path}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, source, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        out = [_convert(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path}: expected a mapping, got {type(value).__name__}")
        kt, vt = args or (Any, Any)
        return {_convert(kt, k, source, path): _convert(vt, v, source, f"{path}.{k}") for k, v in value.items()}
    return _convert_scalar(tp, value, source, path)


def _convert_scalar(tp: Any, value: Any, source: str, path: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {path}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{source}: {path}: expected a path string, got {value!r}")
        return Path(value)
    return value


def to_dict(obj: Any) -> Any:
    """Inverse of :func:`from_dict`: plain YAML-serialisable data (tuples become lists, Paths strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def load_yaml(path: str | Path) -> dict:
    """Read a YAML mapping, turning parse errors and missing files into ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a YAML mapping at the top level, got {type(data).__name__}")
    return data


def load_config(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    """Load YAML file ``path`` into dataclass ``cls``; ``overrides`` (dotted keys) are applied first."""
    return from_dict(cls, apply_overrides(load_yaml(path), overrides), source=str(path))


def apply_overrides(data: dict, overrides: dict | None) -> dict:
    """``data`` with dotted-key ``overrides`` (``optim.peak_lr``) set in place; returned for chaining."""
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return data


def _set_dotted(data: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a mapping")
    node[parts[-1]] = value


def parse_overrides(items: list[str]) -> dict:
    """Parse CLI overrides ``a.b=value`` (value parsed as YAML, so ``x=3`` is an int and ``x=[1,2]`` a list)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(raw)
    return out
