"""Typed run configs: dataclasses filled from YAML and `--set a.b=c`, checked before any work starts."""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from common.errors import ConfigError

T = TypeVar("T")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file plus `key.sub=value` overrides; unknown keys and bad values fail here."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(path, "config file not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(path, f"not valid YAML ({exc.__class__.__name__})") from None
        if not isinstance(raw, dict):
            raise ConfigError(path, "top level must be a mapping of sections")
    for item in overrides or []:
        _apply_override(raw, item)
    return _build(cls, raw, prefix="", source=str(path) if path else "--set")


def _apply_override(raw: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(None, f"--set expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(None, f"--set {key}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else ""


def _build(cls: type[T], raw: dict[str, Any], prefix: str, source: str) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(prefix + name for name in fields)
        raise ConfigError(None, f"unknown config key {prefix + unknown[0]!r} (known: {known})")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, prefix + name)
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(None, f"{prefix.rstrip('.') or 'config'}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(None, f"{prefix.rstrip('.') or 'config'}: {exc}") from None
    return obj


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(None, f"config key {key!r} must be a section, got {value!r}")
        return _build(hint, value, prefix=key + ".", source="")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(None, f"config key {key!r} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(None, f"config key {key!r} must be a list, got {value!r}")
        (item_type, *_) = typing.get_args(hint) or (Any,)
        items = [_coerce(item_type, v, key) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(None, f"config key {key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(None, f"config key {key!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as text
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(None, f"config key {key!r} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(None, f"config key {key!r} must be text, got {value!r}")
    return value


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested dataclass into `section.key: value` pairs, the form MLflow params take."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten_config(value, prefix + f.name + "."))
        else:
            out[prefix + f.name] = value
    return out


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain dict (YAML-safe) of a config, for storing beside a model."""
    return dataclasses.asdict(cfg)
