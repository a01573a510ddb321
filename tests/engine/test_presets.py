from dataclasses import replace

import pytest

from softtoken.engine import (
    PROGRAM_PRESETS,
    OptimizerConfig,
    Ramp,
    StageConfig,
    WeightSchedule,
    get_program_preset,
    run_program,
    sized,
    stages_with,
)
from softtoken.engine.presets import (
    germinal_logit_stage,
    germinal_softmax_stage,
    relaxed_stage,
    sharpening_stage,
    straight_through_stage,
)
from softtoken.objectives import Fluency, ObjectiveContext, TargetCE


def test_anneal_program_values_are_locked():
    assert get_program_preset("anneal") == (relaxed_stage(), sharpening_stage(), straight_through_stage())
    assert relaxed_stage() == StageConfig(steps=100, lr=0.1, optimizer=OptimizerConfig(kind="adam"),
                                          soft=Ramp.fixed(1.0), temperature=Ramp.fixed(1.0), normalize="none",
                                          gumbel_init=True, gumbel_init_divisor=1.0)
    assert sharpening_stage() == StageConfig(steps=100, lr=0.1, soft=Ramp.fixed(1.0), normalize="none",
                                             temperature=Ramp(start=1.0, end=0.1, schedule="exponential"))
    assert straight_through_stage() == StageConfig(steps=50, lr=0.05, soft=Ramp.fixed(1.0),
                                                   hard=Ramp(start=0.0, end=1.0, schedule="linear"),
                                                   temperature=Ramp.fixed(0.1), normalize="none")


def test_germinal_program_values_are_locked():
    logit, softmax = get_program_preset("germinal")
    assert (logit.steps, logit.lr, logit.optimizer.kind) == (65, 0.1, "sgd")
    assert (logit.soft, logit.hard, logit.temperature) == (Ramp(start=0.0, end=1.0), Ramp.fixed(0.0), Ramp.fixed(1.0))
    assert (logit.merger, logit.norm_alignment, logit.normalize) == ("pcgrad", "match_first", "sqrt_length")
    assert logit.weight_schedules == (WeightSchedule(label="fluency", ramp=Ramp(start=0.2, end=0.4, schedule="hinge")),)
    assert (logit.gumbel_init, logit.gumbel_init_divisor) == (True, 2.0)
    assert (logit.save_best, logit.zero_norm_eps) == (True, 0.0)
    assert (softmax.steps, softmax.lr, softmax.optimizer.kind) == (35, 0.1, "sgd")
    assert softmax.temperature == Ramp(start=1.0, end=0.01, schedule="quadratic")
    assert (softmax.scale_lr_by_temperature, softmax.min_lr_scale) == (True, 0.01)
    assert (softmax.merger, softmax.norm_alignment, softmax.normalize) == ("pcgrad", "match_first", "sqrt_length")
    assert (softmax.gumbel_init, softmax.weight_schedules) == (False, ())
    assert (logit, softmax) == (germinal_logit_stage(), germinal_softmax_stage())


def test_every_preset_stage_round_trips_through_a_plain_dict():
    for name in PROGRAM_PRESETS:
        for config in get_program_preset(name):
            assert StageConfig.from_dict(config.to_dict()) == config


def test_program_presets_registry_lists_sorted_keys_on_unknown_name():
    assert sorted(PROGRAM_PRESETS) == ["anneal", "germinal"]
    with pytest.raises(ValueError, match=r"unknown program preset 'x'; available: \['anneal', 'germinal'\]"):
        get_program_preset("x")


@pytest.mark.parametrize("name", ["anneal", "germinal"])
def test_program_presets_run_end_to_end_when_shortened(tiny_lm, name):
    configs = tuple(replace(config, steps=2) for config in sized(get_program_preset(name), prompt_length=3,
                                                                   trajectories=2))
    context = ObjectiveContext(target_ids=(15, 50, 8))
    result = run_program(tiny_lm, stages_with(configs, (TargetCE(), Fluency(weight=0.3))), context)
    assert len(result.stages) == len(configs)
    assert all(len(ids) == 3 for ids in result.final.prompt_ids) and len(result.final.loss) == 2
