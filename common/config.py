"""Typed run configs: dataclasses filled from YAML and `--set a.b=c`, checked before any work starts.

A config section declares its value ranges as data, in scikit-learn's `_parameter_constraints` style:

    @dataclass
    class TrainConfig:
        CONSTRAINTS: ClassVar[Constraints] = {"epochs": Interval(1, None), "lr": Interval(0, None, "neither")}
        epochs: int = 10
        lr: float = 3e-3

`load_config` checks every section's constraints (then its `validate()`, for rules that tie fields
together) and names the YAML file (or the `--set` item) and the key of any value it refuses.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from common.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Interval:
    """A number from `low` to `high` (None: unbounded); `closed` says which ends belong to it."""

    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        low_in, high_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and (value < self.low or (value == self.low and not low_in)):
            return False
        return self.high is None or not (value > self.high or (value == self.high and not high_in))

    def __str__(self) -> str:
        low_in, high_in = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is None and self.high is None:
            return "a finite number"
        if self.high is None:
            return f"at least {self.low:g}" if low_in else f"above {self.low:g}"
        if self.low is None:
            return f"at most {self.high:g}" if high_in else f"below {self.high:g}"
        return f"in {'[' if low_in else '('}{self.low:g}, {self.high:g}{']' if high_in else ')'}"


@dataclass(frozen=True)
class Each:
    """Every item of a list meets `item`; `length` (if set) is the list's exact length, else at least one."""

    item: Interval
    length: int | None = None

    def accepts(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)):
            return False
        right_length = len(value) == self.length if self.length is not None else len(value) >= 1
        return right_length and all(self.item.accepts(v) for v in value)

    def __str__(self) -> str:
        count = f"{self.length} numbers" if self.length is not None else "a non-empty list of numbers"
        return f"{count}, each {self.item}"


Constraint = Interval | Each
Constraints = Mapping[str, Constraint]
# The shares of the data a split holds out for validation and for test (every domain's `data` section).
HELD_OUT_FRACTIONS: Constraints = {"val_fraction": Interval(0, 0.5, "neither"),
                                   "test_fraction": Interval(0, 0.5, "neither")}


def constraint_violations(section: Any, prefix: str = "") -> list[tuple[str, str]]:
    """What breaks `section`'s declared CONSTRAINTS or its `Literal` choices: (key, "key must be …, got …")
    pairs; empty: all fine."""
    problems = []
    for name, hint in typing.get_type_hints(type(section)).items():
        if typing.get_origin(hint) is Literal and getattr(section, name) not in typing.get_args(hint):
            problems.append((prefix + name, f"{prefix}{name} must be one of {list(typing.get_args(hint))}, "
                                            f"got {getattr(section, name)!r}"))
    for name, constraint in getattr(type(section), "CONSTRAINTS", {}).items():
        value = getattr(section, name)
        if not constraint.accepts(value):
            problems.append((prefix + name, f"{prefix}{name} must be {constraint}, got {value!r}"))
    return problems


def check_section(section: Any, prefix: str = "") -> None:
    """Constraints, then the section's own `validate()`: for code that builds a config without `load_config`."""
    problems = constraint_violations(section, prefix)
    if problems:
        raise ValueError(problems[0][1])
    validate = getattr(section, "validate", None)
    if callable(validate):
        validate()


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build `cls` from a YAML file plus `key.sub=value` overrides; unknown keys and bad values fail here,
    each naming where the value came from (the YAML file, or the `--set` item) and its key."""
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
    origins = _Origins(path)
    for item in overrides or []:
        origins.overridden[_apply_override(raw, item)] = item
    return _build(cls, raw, prefix="", origins=origins)


@dataclass
class _Origins:
    """Where each value came from, so an error names the file to fix (or the `--set` item)."""

    path: Path | None
    overridden: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> its `--set` item

    def of(self, key: str) -> str | None:
        for overridden, item in reversed(self.overridden.items()):  # the last --set of the key (or its section)
            if key == overridden or key.startswith(overridden + "."):
                return f"--set {item}"
        return None if self.path is None else str(self.path)

    def of_section(self, prefix: str) -> str | None:
        sets = [item for key, item in self.overridden.items() if key.startswith(prefix)]
        if sets:
            return f"--set {sets[0]}" if self.path is None else f"{self.path} (with --set {', '.join(sets)})"
        return None if self.path is None else str(self.path)


def _apply_override(raw: dict[str, Any], item: str) -> str:
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
    return key.strip()


def _build(cls: type[T], raw: dict[str, Any], prefix: str, origins: _Origins) -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(prefix + name for name in fields)
        raise ConfigError(origins.of(prefix + unknown[0]),
                          f"unknown config key {prefix + unknown[0]!r} (known: {known})")
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, prefix + name, origins)
    section = prefix.rstrip(".") or "config"
    try:
        obj = cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(origins.of_section(prefix), f"{section}: {exc}") from None
    for key, problem in constraint_violations(obj, prefix):
        raise ConfigError(origins.of(key), problem)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as exc:
            raise ConfigError(origins.of_section(prefix), f"{section}: {exc}") from None
    return obj


def _coerce(hint: Any, value: Any, key: str, origins: _Origins) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(origins.of(key), f"config key {key!r} must be a section, got {value!r}")
        return _build(hint, value, prefix=key + ".", origins=origins)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key, origins)
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(origins.of(key), f"config key {key!r} must be one of {list(allowed)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(origins.of(key), f"config key {key!r} must be a list, got {value!r}")
        (item_type, *_) = typing.get_args(hint) or (Any,)
        items = [_coerce(item_type, v, key, origins) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(origins.of(key), f"config key {key!r} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(origins.of(key), f"config key {key!r} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as text
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(origins.of(key), f"config key {key!r} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(origins.of(key), f"config key {key!r} must be text, got {value!r}")
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
