"""Schedules: a scalar that moves from `start` to `end` over a stage.

Progress is t = step / total with step counted from 1, so step 1 is already one step along
(start + (end - start) / total for `linear`) and step `total` is exactly `end`. Every factory
validates its own arguments, so a `Ramp` that can be built is a ramp that makes sense.

    ramp = Ramp(start=1.0, end=0.01, schedule="cosine")
    ramp.value(step=10, total=100)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from softtoken.configcheck import check_types

Schedule = Callable[[int, int], float]  # (step, total) -> value
ScheduleFactory = Callable[[float, float], Schedule]  # (start, end) -> schedule

SCHEDULES: dict[str, ScheduleFactory] = {}


def register_schedule(name: str) -> Callable[[ScheduleFactory], ScheduleFactory]:
    """Function decorator adding a schedule factory to SCHEDULES under `name`."""

    def add(factory: ScheduleFactory) -> ScheduleFactory:
        if name in SCHEDULES:
            raise ValueError(f"schedule {name!r} is already registered")
        SCHEDULES[name] = factory
        return factory

    return add


def get_schedule(name: str) -> ScheduleFactory:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; available: {sorted(SCHEDULES)}")
    return SCHEDULES[name]


def progress(step: int, total: int) -> float:
    """t = step / total, clipped to 1; step 0 is the state before the first update."""
    if total < 1:
        raise ValueError(f"schedule total must be >= 1, got {total}")
    if step < 0:
        raise ValueError(f"schedule step must be >= 0, got {step}")
    return min(step / total, 1.0)


def _check_finite(name: str, start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"schedule {name!r} needs finite start and end, got start={start}, end={end}")


@register_schedule("constant")
def constant(start: float, end: float) -> Schedule:
    _check_finite("constant", start, end)
    # An end that differs would be silently ignored; refuse it instead.
    if end != start:
        raise ValueError(f"schedule 'constant' needs end == start, got start={start}, end={end}")
    return lambda step, total: start


@register_schedule("linear")
def linear(start: float, end: float) -> Schedule:
    _check_finite("linear", start, end)
    return lambda step, total: start + (end - start) * progress(step, total)


@register_schedule("cosine")
def cosine(start: float, end: float) -> Schedule:
    _check_finite("cosine", start, end)
    return lambda step, total: end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * progress(step, total)))


@register_schedule("exponential")
def exponential(start: float, end: float) -> Schedule:
    _check_finite("exponential", start, end)
    if not (start > 0 and end > 0):
        raise ValueError(f"schedule 'exponential' needs start > 0 and end > 0, got start={start}, end={end}")
    return lambda step, total: start * (end / start) ** progress(step, total)


@register_schedule("hinge")
def hinge(start: float, end: float) -> Schedule:
    _check_finite("hinge", start, end)
    # max(end t, start) is flat until t = start / end; with start >= end it would never move.
    if not start < end:
        raise ValueError(f"schedule 'hinge' needs start < end, got start={start}, end={end}")
    return lambda step, total: max(end * progress(step, total), start)


@register_schedule("quadratic")
def quadratic(start: float, end: float) -> Schedule:
    _check_finite("quadratic", start, end)
    # Fast change early, flat near the end.
    return lambda step, total: end + (start - end) * (1.0 - progress(step, total)) ** 2


@dataclass(frozen=True, kw_only=True)
class Ramp:
    """A scalar going from `start` to `end` along a registered schedule."""

    start: float
    end: float
    schedule: str = "linear"  # a key of SCHEDULES

    def __post_init__(self) -> None:
        check_types(self)
        get_schedule(self.schedule)(self.start, self.end)  # raises on arguments the schedule rejects

    @classmethod
    def fixed(cls, value: float) -> Ramp:
        return cls(start=value, end=value, schedule="constant")

    def value(self, step: int, total: int) -> float:
        return float(get_schedule(self.schedule)(self.start, self.end)(step, total))

    def within(self, name: str, low: float, high: float) -> None:
        """Raise unless both endpoints lie in [low, high]; `name` is the owning config field."""
        for end_name, value in (("start", self.start), ("end", self.end)):
            if not low <= value <= high:
                raise ValueError(f"{name}.{end_name} must be in [{low}, {high}], got {value}")
