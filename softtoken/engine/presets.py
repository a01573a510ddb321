"""Named stage and program presets; values are locked by tests/engine/test_presets.py.

A preset returns StageConfigs only: the caller sizes them (engine.program.sized) and pairs them with
objectives (engine.program.stages_with).

    stages = stages_with(sized(anneal_program(), prompt_length=8, trajectories=4), (TargetCE(),))
    result = run_program(lm, stages, ObjectiveContext(target_ids=target))
"""

from __future__ import annotations

from collections.abc import Callable

from softtoken.engine.config import StageConfig, WeightSchedule
from softtoken.engine.optimizers import OptimizerConfig
from softtoken.engine.schedules import Ramp

ADAM = OptimizerConfig(kind="adam")
SGD = OptimizerConfig(kind="sgd")
# Germinal's AbLang schedule: weight flat at 0.2 until half way, then 0.4 t.
FLUENCY_HINGE = WeightSchedule(label="fluency", ramp=Ramp(start=0.2, end=0.4, schedule="hinge"))


def relaxed_stage() -> StageConfig:
    """Full softmax at T = 1 from Gumbel-noised zeros: explore in the interior of the simplex."""
    return StageConfig(steps=100, lr=0.1, optimizer=ADAM, soft=Ramp.fixed(1.0), temperature=Ramp.fixed(1.0),
                       normalize="none", gumbel_init=True, gumbel_init_divisor=1.0)


def sharpening_stage() -> StageConfig:
    """Temperature 1 -> 0.1 (exponential), pushing each row towards a vertex."""
    return StageConfig(steps=100, lr=0.1, optimizer=ADAM, soft=Ramp.fixed(1.0),
                       temperature=Ramp(start=1.0, end=0.1, schedule="exponential"), normalize="none")


def straight_through_stage() -> StageConfig:
    """Hard share 0 -> 1: the model ends up seeing exactly the discrete prompt it will be scored on."""
    return StageConfig(steps=50, lr=0.05, optimizer=ADAM, soft=Ramp.fixed(1.0), hard=Ramp(start=0.0, end=1.0),
                       temperature=Ramp.fixed(0.1), normalize="none")


def anneal_program() -> tuple[StageConfig, ...]:
    """Relaxed logits -> sharpening softmax -> hard straight-through."""
    return (relaxed_stage(), sharpening_stage(), straight_through_stage())


def germinal_logit_stage() -> StageConfig:
    """Germinal's logit phase (proto-gradient-optimizer.md §12), fluency in AbLang's place.

    soft ramps 0 -> 1; here soft = 0 is a one-hot prompt (engine.relaxation), not ColabDesign's raw logits.
    """
    return StageConfig(steps=65, lr=0.1, optimizer=SGD, soft=Ramp(start=0.0, end=1.0), temperature=Ramp.fixed(1.0),
                       merger="pcgrad", norm_alignment="match_first", normalize="sqrt_length",
                       weight_schedules=(FLUENCY_HINGE,),
                       gumbel_init=True, gumbel_init_divisor=2.0)


def germinal_softmax_stage() -> StageConfig:
    """Germinal's softmax phase: T 1 -> 0.01 quadratic, lr scaled by T with a 0.01 floor."""
    return StageConfig(steps=35, lr=0.1, optimizer=SGD, soft=Ramp.fixed(1.0),
                       temperature=Ramp(start=1.0, end=0.01, schedule="quadratic"), scale_lr_by_temperature=True,
                       min_lr_scale=0.01, merger="pcgrad", norm_alignment="match_first", normalize="sqrt_length")


def germinal_program() -> tuple[StageConfig, ...]:
    return (germinal_logit_stage(), germinal_softmax_stage())


PROGRAM_PRESETS: dict[str, Callable[[], tuple[StageConfig, ...]]] = {
    "anneal": anneal_program,
    "germinal": germinal_program,
}


def get_program_preset(name: str) -> tuple[StageConfig, ...]:
    if name not in PROGRAM_PRESETS:
        raise ValueError(f"unknown program preset {name!r}; available: {sorted(PROGRAM_PRESETS)}")
    return PROGRAM_PRESETS[name]()
