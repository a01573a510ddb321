"""The tracker interface: where progress goes. Algorithms get one injected; the default does nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class Tracker(Protocol):
    """Receives slash-keyed metrics per step; backends (progress bars, files) live outside the algorithms."""

    def log(self, step: int, metrics: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


class NullTracker:
    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        return None

    def close(self) -> None:
        return None
