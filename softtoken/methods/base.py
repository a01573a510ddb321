"""What every inversion method shares: the Problem, the Budget, the Clock, the Result and the registry."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from softtoken.configcheck import check_types
from softtoken.lm.frame import FramedTarget
from softtoken.lm.softlm import SoftLM
from softtoken.metrics.tracking import NullTracker, Tracker  # noqa: F401 (re-exported for methods)


class NonFiniteLossError(FloatingPointError):
    """The loss (or a gradient) became NaN/inf; the run cannot continue."""


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Invert `target_ids` on `lm`: find `prompt_length` prompt tokens from lm's prompt vocabulary."""

    lm: SoftLM = field(repr=False, compare=False)
    target_ids: tuple[int, ...] = ()  # for a universal problem: the targets' ids, concatenated (set for you)
    prompt_length: int
    seed: int = 0
    universal: tuple[FramedTarget, ...] = ()  # one prompt for all of these, each target in its own frame

    def __post_init__(self) -> None:
        if self.universal:
            if self.target_ids:
                raise ValueError("a universal problem takes its targets from `universal`; leave target_ids empty")
            object.__setattr__(self, "target_ids", tuple(i for t in self.universal for i in t.target_ids))
            if not all(t.target_ids for t in self.universal):
                raise ValueError("every universal target needs at least one token")
        if len(self.target_ids) == 0:
            raise ValueError("target is empty: give a non-empty target text or target ids")
        if self.prompt_length < 1:
            raise ValueError(f"prompt_length must be >= 1, got {self.prompt_length}")
        limit = self.lm.output_vocab_size
        bad = [t for t in self.target_ids if not 0 <= t < limit]
        if bad:
            raise ValueError(f"target ids out of the model's vocabulary [0, {limit}): {bad[:5]}")
        for lm, target in self.framed_targets():
            check_context_length(lm, self.prompt_length, len(target))

    def framed_targets(self) -> list[tuple[SoftLM, tuple[int, ...]]]:
        """(the model in the target's frame, the target) for each target: one, or a universal prompt's."""
        if not self.universal:
            return [(self.lm, self.target_ids)]
        return [(self.lm.framed(t.frame), t.target_ids) for t in self.universal]


def check_context_length(lm: SoftLM, prompt_length: int, target_length: int) -> None:
    """Refuse a problem longer than the model reads (it would run, slowly, on positions it was never trained on)."""
    frame, limit = lm.frame, lm.context_limit
    context = len(frame.prefix_ids) + len(frame.suffix_ids)
    used = prompt_length + context + target_length
    if limit is not None and used > limit:
        raise ValueError(f"prompt ({prompt_length}) + context ({context}) + target ({target_length}) = {used} "
                         f"positions exceed the model's maximum of {limit}")


@dataclass(frozen=True, kw_only=True)
class Budget:
    """Stop after `steps` optimiser steps, `seconds` of wall time or `forward_tokens` of compute,
    whichever comes first (checked between steps)."""

    steps: int | None = None  # None: the method's configured number of steps
    seconds: float | None = None  # None: no time limit
    forward_tokens: int | None = None  # None: no compute limit; positions through the model, all passes

    def __post_init__(self) -> None:
        check_types(self)
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


TIMED_HISTORY_KEYS = frozenset({"eval/seconds"})


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
    context: dict[str, Any] = field(default_factory=dict)  # the Frame around the prompt (Frame.to_dict); {} bare

    @property
    def exact_match(self) -> bool:
        return bool(self.metrics.get("eval/exact_match", False))

    def seeded_history(self) -> dict[str, list]:
        """The history without its wall-clock entries: what config and seed determine."""
        return {key: values for key, values in self.history.items() if key not in TIMED_HISTORY_KEYS}

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
