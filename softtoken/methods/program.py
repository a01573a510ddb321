"""Inversion by an engine program: stages of the gradient optimiser judged by the shared evaluator.

A program is a list of stages (engine.StageConfig fields, optionally with their own objectives);
each continues from the logits the previous one returned. The default objective is the
teacher-forced target CE. `DiscreteMonitor` greedy-decodes each trajectory's argmax prompt every
`eval_every` steps (counted across stages) and stops the whole program on an exact match.

    method = ProgramMethod(anneal_inversion())
    result = method.run(Problem(lm=lm, target_ids=ids, prompt_length=8), Budget(seconds=120))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from softtoken.configcheck import check_types
from softtoken.engine import NonFiniteGradientError, program_from_dict, run_program
from softtoken.engine.presets import relaxed_stage, sharpening_stage, straight_through_stage
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.harness import RunHarness
from softtoken.methods.monitoring import DiscreteMonitor
from softtoken.objectives import TargetCE
from softtoken.objectives.target import per_target


@dataclass(frozen=True, kw_only=True)
class ProgramConfig:
    """A program as plain data: stages are StageConfig fields (+ optional `objectives`) as in YAML."""

    stages: tuple[Mapping[str, Any], ...]  # at least one stage; prompt_length comes from the problem
    eval_every: int = 10  # steps (across stages) between discrete evaluations of every trajectory, >= 1
    score_hard_samples: bool = False  # also confirm straight-through samples whose TF argmax is the target

    def __post_init__(self) -> None:
        check_types(self)
        if not self.stages:
            raise ValueError("ProgramConfig.stages must hold at least one stage, got ()")
        if self.eval_every < 1:
            raise ValueError(f"ProgramConfig.eval_every must be >= 1, got {self.eval_every}")
        object.__setattr__(self, "stages", tuple(dict(stage) for stage in self.stages))
        self.build(prompt_length=1)  # validates every stage now, not at run time
        trajectories = {stage.config.trajectories for stage in self.build(prompt_length=1)}
        if len(trajectories) != 1:
            raise ValueError(f"ProgramConfig: every stage needs the same number of trajectories, got {trajectories}")

    @property
    def epochs(self) -> int:
        """Total steps over all stages."""
        return sum(stage.config.steps for stage in self.build(prompt_length=1))

    def build(self, *, prompt_length: int):
        """The engine stages for a prompt of `prompt_length` tokens (default objective: target CE)."""
        stages = program_from_dict({"stages": list(self.stages)}, default_objectives=(TargetCE(),))
        return tuple(replace(stage, config=replace(stage.config, prompt_length=prompt_length)) for stage in stages)


@register_method("program")
class ProgramMethod:
    """Run an engine program on the inversion problem; return the best discrete prompt seen."""

    name = "program"
    config_class = None  # a program has no default; use a preset or a YAML file
    universal = True

    def __init__(self, config: ProgramConfig) -> None:
        self.config = config

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        run = RunHarness(problem, budget, steps=self.config.epochs, tracker=tracker)
        stages = self.config.build(prompt_length=problem.prompt_length)
        labels = {o.label for stage in stages for o in stage.objectives if o.label.startswith("target")}
        if not labels:
            raise ValueError("an inversion program needs a 'target' or 'target_free' objective in every stage")
        judged = next(o for stage in stages for o in stage.objectives if o.label == min(labels))
        stages, judged_labels = universal_stages(stages, judged.label, problem)
        # The stages run their own step counts; a smaller step budget stops them early.
        monitor = DiscreteMonitor(run, labels=judged_labels, eval_every=self.config.eval_every,
                                  score_hard_samples=self.config.score_hard_samples,
                                  step_cap=run.budget.steps is not None)
        try:
            result = run_program(problem.lm, stages, run.context, seed=problem.seed, monitor=monitor)
        except NonFiniteGradientError as err:
            raise NonFiniteLossError(f"program: {err}") from err
        monitor.offer_final(result.final.logits)
        return run.result(self.name, self.config, extra_metrics=monitor.extra_metrics(), objective=judged)


def universal_stages(stages: list, label: str, problem: Problem) -> tuple[list, list[str]]:
    """For a universal prompt, the judged target objective of every stage becomes one copy per target (the
    stage's merger combines them); -> the stages and the judged labels."""
    if not problem.universal:
        return stages, [label]
    expanded = []
    for stage in stages:
        objectives = []
        for objective in stage.objectives:
            objectives.extend(per_target(objective, problem.universal) if objective.label == label else [objective])
        expanded.append(replace(stage, objectives=tuple(objectives)))
    return expanded, [f"{label}/{index}" for index in range(len(problem.universal))]


def anneal_inversion() -> ProgramConfig:
    """Relaxed logits -> sharpening softmax -> hard straight-through, 4 trajectories, target CE."""
    stages = (relaxed_stage(), sharpening_stage(), straight_through_stage())
    return ProgramConfig(stages=tuple(replace(stage, trajectories=4).to_dict() for stage in stages),
                         eval_every=10, score_hard_samples=True)
