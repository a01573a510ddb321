"""One-call Python entry points."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from softtoken.engine import program_from_dict, run_program
from softtoken.lm.evaluation import evaluate_prompts
from softtoken.lm.loading import LoadedModel
from softtoken.lm.softlm import SoftLM, as_softlm
from softtoken.methods import Budget, Problem, ProgramConfig, ProgramMethod, Result, Tracker, build_method
from softtoken.objectives import ObjectiveContext

__all__ = ["as_softlm", "build_method", "design", "invert", "method_from_config"]

DESIGN_KEYS = {"stages", "prompt_length", "target", "target_ids", "seed"}


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
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> Result:
    """Find a discrete prompt that makes `model` greedily emit `target` (text or `target_ids`).

    `config` (e.g. a loaded YAML program) replaces method/preset/options; see `method_from_config`.
    """
    if target_ids is None and not target:
        raise ValueError("target is empty: give a non-empty target text or target_ids")
    runner = method_from_config(config) if config is not None else build_method(method, preset, options)
    lm = as_softlm(model, device=device, dtype=dtype)
    ids = tuple(int(i) for i in target_ids) if target_ids is not None else tuple(lm.encode(target))
    problem = Problem(lm=lm, target_ids=ids, prompt_length=prompt_length, seed=seed)
    return runner.run(problem, Budget(steps=steps, seconds=time_budget), tracker)


def method_from_config(data: Mapping[str, Any]):
    """A method from a config mapping: `{stages: [...], eval_every, ...}` is a program, otherwise
    `{method: NAME, preset: NAME, options: {...}}`."""
    if "stages" in data:
        return _program_method(data)
    unknown = sorted(set(data) - {"method", "preset", "options"})
    if unknown:
        raise ValueError(f"config keys {unknown} unknown; use 'stages' (a program) or method/preset/options")
    return build_method(data.get("method"), data.get("preset"), dict(data.get("options") or {}))


def _program_method(data: Mapping[str, Any]) -> ProgramMethod:
    return ProgramMethod(ProgramConfig(**data))


def design(config: Mapping[str, Any], model: str | LoadedModel | SoftLM | None = None, *, device: str = "cpu",
           dtype: str = "float32", tracker: Tracker | None = None) -> dict[str, Any]:
    """Run a multi-objective program (no target required) and report every trajectory's prompt.

    `config`: `prompt_length`, `stages` (each with `objectives`), optional `target` / `target_ids`
    (then each prompt is also greedy-decoded and scored) and `seed`.
    """
    unknown = sorted(set(config) - DESIGN_KEYS)
    if unknown:
        raise ValueError(f"design config: unknown keys {unknown}; valid: {sorted(DESIGN_KEYS)}")
    if "prompt_length" not in config:
        raise ValueError("design config needs 'prompt_length'")
    lm = as_softlm(model, device=device, dtype=dtype)
    target = _design_target(lm, config)
    stages = program_from_dict({"stages": [{**stage, "prompt_length": config["prompt_length"]}
                                           for stage in config.get("stages") or []]})
    result = run_program(lm, stages, ObjectiveContext(target_ids=target), tracker=tracker,
                         seed=int(config.get("seed", 0)))
    final = result.final
    trajectories = [{"prompt_ids": ids, "prompt_text": lm.decode(ids), "loss": loss,
                     "objective_losses": {label: values[b] for label, values in final.objective_losses.items()}}
                    for b, (ids, loss) in enumerate(zip(final.prompt_ids, final.loss))]
    if target:
        for entry, score in zip(trajectories, evaluate_prompts(lm, torch.tensor(final.prompt_ids), target)):
            entry.update(output_text=lm.decode(score.output_ids), exact_match=score.exact_match,
                         lcs_ratio=score.lcs_ratio, token_accuracy=score.token_accuracy)
    return {"config": dict(config), "target_ids": list(target), "trajectories": trajectories,
            "history": result.to_dict()["stages"]}


def _design_target(lm: SoftLM, config: Mapping[str, Any]) -> tuple[int, ...]:
    if "target_ids" in config:
        return tuple(int(i) for i in config["target_ids"])
    return tuple(lm.encode(config["target"])) if config.get("target") else ()
