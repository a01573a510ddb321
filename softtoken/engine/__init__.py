"""The gradient sequence optimiser: schedules, gradient merging, update rules, stages and programs."""

from softtoken.engine.config import PositionBias, StageConfig, WeightSchedule
from softtoken.engine.gradients import MERGERS, GradientMerger, align_norms, get_merger, normalize_gradient
from softtoken.engine.optimizers import UPDATE_RULES, OptimizerConfig, UpdateRule, build_update_rule
from softtoken.engine.presets import PROGRAM_PRESETS, get_program_preset
from softtoken.engine.program import (
    ProgramResult,
    Stage,
    program_from_dict,
    run_program,
    sized,
    stage_from_dict,
    stages_with,
)
from softtoken.engine.schedules import SCHEDULES, Ramp, get_schedule
from softtoken.engine.stage import Monitor, NonFiniteGradientError, Snapshot, StageResult, StepView, run_stage

__all__ = [
    "MERGERS",
    "PROGRAM_PRESETS",
    "SCHEDULES",
    "UPDATE_RULES",
    "GradientMerger",
    "Monitor",
    "NonFiniteGradientError",
    "OptimizerConfig",
    "PositionBias",
    "ProgramResult",
    "Ramp",
    "Snapshot",
    "Stage",
    "StageConfig",
    "StageResult",
    "StepView",
    "UpdateRule",
    "WeightSchedule",
    "align_norms",
    "build_update_rule",
    "get_merger",
    "get_program_preset",
    "get_schedule",
    "normalize_gradient",
    "program_from_dict",
    "run_program",
    "run_stage",
    "sized",
    "stage_from_dict",
    "stages_with",
]
