"""What every inversion method shares: the Problem, the Budget, the Clock, the Result and the registry."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from softtoken.lm.softlm import SoftLM
from softtoken.metrics.tracking import NullTracker, Tracker  # noqa: F401 (re-exported for methods)


class NonFiniteLossError(FloatingPointError):
    """The loss (or a gradient) became NaN/inf; the run cannot continue."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Invert `target_ids` on `lm`: find `prompt_length` prompt tokens from lm's prompt vocabulary."""

    lm: SoftLM = field(repr=False, compare=False)
    target_ids: tuple[int, ...]
    prompt_length: int
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.target_ids) == 0:
            raise ValueError("target is empty: give a non-empty target text or target ids")
        if self.prompt_length < 1:
            raise ValueError(f"prompt_length must be >= 1, got {self.prompt_length}")
        limit = self.lm.output_vocab_size
        bad = [t for t in self.target_ids if not 0 <= t < limit]
        if bad:
            raise ValueError(f"target ids out of the model's vocabulary [0, {limit}): {bad[:5]}")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Stop after `steps` optimiser steps, `seconds` of wall time or `forward_tokens` of compute,
    whichever comes first (checked between steps)."""

    steps: int | None = None  # None: the method's configured number of steps
    seconds: float | None = None  # None: no time limit
    forward_tokens: int | None = None  # None: no compute limit; positions through the model, all passes

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"Budget.steps must be >= 1, got {self.steps}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"Budget.seconds must be > 0, got {self.seconds}")
        if self.forward_tokens is not None and self.forward_tokens < 1:
            raise ValueError(f"Budget.forward_tokens must be >= 1, got {self.forward_tokens}")

    def resolve_steps(self, configured: int) -> int:
        return configured if self.steps is None else self.steps

    def compute_spent(self, forward_tokens: int) -> bool:
        return self.forward_tokens is not None and forward_tokens >= self.forward_tokens


class Clock:
    """Wall-clock deadline for a run."""

    def __init__(self, seconds: float | None) -> None:
        self.start = time.perf_counter()
        self.deadline = math.inf if seconds is None else self.start + seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def expired(self) -> bool:
        return time.perf_counter() >= self.deadline


@dataclass(kw_only=True)
class Result:
    """The outcome of one inversion run; plain Python values only, so it is one JSON line."""

    method: str
    config: dict[str, Any]
    seed: int
    target_ids: list[int]
    target_text: str
    prompt_ids: list[int]
    prompt_text: str
    output_ids: list[int]
    output_text: str
    metrics: dict[str, Any]
    success_step: int | None
    steps_run: int
    wall_time_s: float
    forward_tokens: int
    backward_tokens: int
    history: dict[str, list] = field(default_factory=dict)

    @property
    def exact_match(self) -> bool:
        return bool(self.metrics.get("eval/exact_match", False))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Result:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Result fields: {unknown}")
        return cls(**data)


METHODS: dict[str, type] = {}


def register_method(name: str):
    """Class decorator adding a Method to the registry under `name`."""

    def add(cls: type) -> type:
        if name in METHODS:
            raise ValueError(f"method {name!r} is already registered")
        METHODS[name] = cls
        cls.name = name
        return cls

    return add


def get_method_class(name: str) -> type:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; available: {sorted(METHODS)}")
    return METHODS[name]
