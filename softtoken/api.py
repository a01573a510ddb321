"""One-call Python entry points."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from softtoken.lm.loading import LoadedModel, load_model
from softtoken.lm.softlm import SoftLM
from softtoken.methods import Budget, Problem, Result, Tracker, get_method_class, get_preset, with_options


def as_softlm(model: str | LoadedModel | SoftLM | None, *, device: str = "cpu", dtype: str = "float32") -> SoftLM:
    """Accept a model name/path (None = embedded default), a LoadedModel or a ready SoftLM."""
    if isinstance(model, SoftLM):
        return model
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device=device, dtype=dtype)
    return SoftLM(loaded.model, loaded.tokenizer)


def build_method(method: str | None = None, preset: str | None = None, options: dict[str, Any] | None = None):
    """Instantiate a registered method from a preset (or the method's default config) plus overrides."""
    if preset is not None:
        preset_method, config = get_preset(preset)
        if method is not None and method != preset_method:
            raise ValueError(f"preset {preset!r} belongs to method {preset_method!r}, not {method!r}")
        cls = get_method_class(preset_method)
    else:
        cls = get_method_class(method or "dlmi")
        config = cls.config_class()
    return cls(with_options(config, options or {}))


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
