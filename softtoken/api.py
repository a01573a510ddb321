"""One-call Python entry points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from softtoken.lm.loading import LoadedModel
from softtoken.lm.softlm import SoftLM, as_softlm
from softtoken.methods import Budget, Problem, Result, Tracker, build_method

__all__ = ["as_softlm", "build_method", "invert"]


def invert(
    target: str | None = None,
    model: str | LoadedModel | SoftLM | None = None,
    *,
    method: str | None = None,
    preset: str | None = None,
    prompt_length: int = 10,
    target_ids: Sequence[int] | None = None,
    steps: int | None = None,
    time_budget: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
    tracker: Tracker | None = None,
    **options: Any,
) -> Result:
    """Find a discrete prompt that makes `model` greedily emit `target` (text or `target_ids`)."""
    if target_ids is None and not target:
        raise ValueError("target is empty: give a non-empty target text or target_ids")
    runner = build_method(method, preset, options)
    lm = as_softlm(model, device=device, dtype=dtype)
    ids = tuple(int(i) for i in target_ids) if target_ids is not None else tuple(lm.encode(target))
    problem = Problem(lm=lm, target_ids=ids, prompt_length=prompt_length, seed=seed)
    return runner.run(problem, Budget(steps=steps, seconds=time_budget), tracker)
