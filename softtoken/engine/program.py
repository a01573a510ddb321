"""Programs: stages run in order, each continuing from the logits the previous one returned.

Every stage starts a fresh update rule (Adam moments are not handed on) and its own schedules; with
save_best the hand-off is the previous stage's best logits, which are also what it reported.

    stages = stages_with(sized(anneal_program(), prompt_length=8, trajectories=4), (TargetCE(), Fluency(weight=0.1)))
    result = run_program(lm, stages, ObjectiveContext(target_ids=target))
    result.final.prompt_ids
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from softtoken.configcheck import check_types
from softtoken.engine.config import StageConfig
from softtoken.engine.stage import Monitor, StageResult, run_stage
from softtoken.lm.softlm import SoftLM
from softtoken.metrics.tracking import Tracker
from softtoken.objectives.base import Objective, ObjectiveContext, build_objective


@dataclass(frozen=True, kw_only=True)
class Stage:
    """A stage's configuration and the objectives it descends."""

    config: StageConfig
    objectives: tuple[Objective, ...]

    def __post_init__(self) -> None:
        check_types(self)
        if not self.objectives:
            raise ValueError("Stage.objectives must hold at least one objective, got ()")


@dataclass(kw_only=True)
class ProgramResult:
    stages: list[StageResult]

    @property
    def final(self) -> StageResult:
        return self.stages[-1]

    def to_dict(self) -> dict:
        return {"stages": [stage.to_dict() for stage in self.stages]}


def stage_from_dict(data: Mapping[str, Any], default_objectives: Sequence[Objective] = ()) -> Stage:
    """A stage from plain values: StageConfig fields plus `objectives: [{name: ..., ...}, ...]`."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a stage must be a mapping of StageConfig fields and 'objectives', got {data!r}")
    values = dict(data)
    specs = values.pop("objectives", None)
    objectives = tuple(build_objective(spec) for spec in specs) if specs else tuple(default_objectives)
    if not objectives:
        raise ValueError("stage has no objectives: list them under 'objectives' (e.g. [{name: target}])")
    return Stage(config=StageConfig.from_dict(values), objectives=objectives)


def program_from_dict(data: Mapping[str, Any], default_objectives: Sequence[Objective] = ()) -> tuple[Stage, ...]:
    """Stages from `{stages: [...]}` (a YAML program); each stage may list its own objectives."""
    stages = data.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ValueError("a program needs a non-empty 'stages' list")
    return tuple(stage_from_dict(stage, default_objectives) for stage in stages)


def stages_with(configs: Sequence[StageConfig], objectives: Sequence[Objective]) -> tuple[Stage, ...]:
    """Pair every config with the same objectives (a fresh tuple per stage, instances shared)."""
    return tuple(Stage(config=config, objectives=tuple(objectives)) for config in configs)


def sized(configs: Sequence[StageConfig], *, prompt_length: int, trajectories: int = 1) -> tuple[StageConfig, ...]:
    """The same stages for a prompt of `prompt_length` tokens and `trajectories` runs (equal in every stage)."""
    return tuple(replace(config, prompt_length=prompt_length, trajectories=trajectories) for config in configs)


class _OffsetTracker:
    """Shifts step numbers so a program's stages log on one continuous axis."""

    def __init__(self, tracker: Tracker, offset: int) -> None:
        self.tracker, self.offset = tracker, offset

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.tracker.log(self.offset + step, metrics)


def run_program(
    lm: SoftLM,
    stages: Sequence[Stage],
    context: ObjectiveContext | None = None,
    *,
    initial_logits: torch.Tensor | None = None,
    tracker: Tracker | None = None,
    seed: int | None = None,
    monitor: Monitor | None = None,
) -> ProgramResult:
    """Run the stages in order; each stage's generator comes from its config.seed.

    A program `seed` replaces every stage's seed with one drawn from it, so one number reseeds the
    whole program and two stages never share a stream by accident.
    """
    if not stages:
        raise ValueError("run_program needs at least one stage")
    configs = [stage.config for stage in stages] if seed is None else with_stage_seeds(stages, seed)
    results: list[StageResult] = []
    logits, offset = initial_logits, 0
    for stage, config in zip(stages, configs, strict=True):
        stage_tracker = None if tracker is None else _OffsetTracker(tracker, offset)
        result = run_stage(lm, config, stage.objectives, context, initial_logits=logits, tracker=stage_tracker,
                           monitor=monitor)
        results.append(result)
        logits, offset = result.logits, offset + config.steps
        if result.stopped_early:
            break
    return ProgramResult(stages=results)


def with_stage_seeds(stages: Sequence[Stage], seed: int) -> list[StageConfig]:
    """The stages' configs with seeds drawn from `seed` (one draw per stage, in order)."""
    if seed < 0:
        raise ValueError(f"program seed must be >= 0, got {seed}")
    draws = torch.randint(0, 2**31 - 1, (len(stages),), generator=torch.Generator().manual_seed(seed))
    return [replace(stage.config, seed=int(draw)) for stage, draw in zip(stages, draws.tolist(), strict=True)]
