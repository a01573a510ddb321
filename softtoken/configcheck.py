"""Check every field of a config dataclass against its declared type, so a bad value is one clear line.

YAML and `-o KEY=VALUE` hand configs strings, floats and bools that the range checks in `__post_init__`
would otherwise meet as a TypeError deep in a comparison, or accept silently ("false" is truthy).

    def __post_init__(self) -> None:
        check_types(self)  # GCGConfig.search_width must be int, got 'abc' (str)
"""

from __future__ import annotations

import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import Any, Literal, Union

MAX_REPR = 80  # characters of a bad value shown in the message; the message stays one short line


def check_types(config: Any) -> None:
    """Raise a one-line ValueError naming the first field whose value does not match its annotation.

    Floats must also be finite: no config field takes NaN or inf, and NaN slips through range checks
    such as `if x < 0: raise`."""
    hints = _hints(type(config))
    for item in fields(config):
        value = getattr(config, item.name)
        hint = hints[item.name]
        if not matches(value, hint):
            raise ValueError(f"{type(config).__name__}.{item.name} must be {describe(hint)}, "
                             f"got {_short(value)} ({type(value).__name__})")
        if _is_float(hint) and isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{type(config).__name__}.{item.name} must be a finite float, got {value}")


def from_mapping(cls: type, data: Any, where: str | None = None) -> Any:
    """`cls(**data)` for a plain mapping read from YAML; `where` names the value in errors."""
    check_keys(cls, data, where)
    return cls(**data)


def check_keys(cls: type, data: Any, where: str | None = None) -> None:
    """One line instead of cls(**data)'s TypeError: a non-mapping, unknown keys, missing required fields."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping of {cls.__name__} fields, got {_short(data)} "
                         f"({type(data).__name__})")
    valid = sorted(item.name for item in fields(cls))
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ValueError(f"unknown {where} fields {unknown}; valid: {valid}")
    missing = [item.name for item in fields(cls) if item.name not in data
               and item.default is MISSING and item.default_factory is MISSING]
    if missing:
        raise ValueError(f"{where} needs {missing}, got {_short(dict(data))}")


def check_values(config: Any, checks: list[tuple[bool, str, str]], prefix: str = "") -> None:
    """Raise for the first (ok, field, expected) check that fails, naming the field and its value."""
    for ok, name, expected in checks:
        if not ok:
            raise ValueError(f"{prefix}{name} must be {expected}, got {getattr(config, name)!r}")


def as_tuple(value: Any, where: str) -> tuple:
    """A YAML list (or a tuple) as a tuple; anything else is a one-line error."""
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where} must be a list, got {_short(value)} ({type(value).__name__})")
    return tuple(value)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Annotations are strings under `from __future__ import annotations`; resolve them once per class.
    return typing.get_type_hints(cls)


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` is of type `hint`: bool is not an int, an int is a float, tuples are checked item by item."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and _tuple_items_match(value, args)
    if origin is not None and isinstance(origin, type) and issubclass(origin, Mapping):
        return isinstance(value, Mapping) and all(
            matches(key, args[0]) and matches(item, args[1]) for key, item in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, origin or hint)


def _tuple_items_match(value: tuple, args: tuple) -> bool:
    if len(args) == 2 and args[1] is Ellipsis:
        return all(matches(item, args[0]) for item in value)
    return len(value) == len(args) and all(matches(item, arg) for item, arg in zip(value, args))


def _is_float(hint: Any) -> bool:
    return hint is float or (typing.get_origin(hint) in (Union, types.UnionType) and float in typing.get_args(hint))


def describe(hint: Any) -> str:
    """A type as the user wrote it: `int | None`, `tuple[int, ...]`, `one of ('a', 'b')`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return "Any"
    if hint is None or hint is type(None):
        return "None"
    if hint is Ellipsis:
        return "..."
    if origin in (Union, types.UnionType):
        return " | ".join(describe(arg) for arg in args)
    if origin is Literal:
        return f"one of {args}"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(describe(arg) for arg in args)}]"
    return getattr(hint, "__name__", str(hint))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR - 3] + "..."
