"""The latent lr factor, now built from the engine's schedules, still gives the numbers it always did."""

import pytest

from softtoken.latent.loop import LoopConfig, lr_factor


def _config(**overrides):
    return LoopConfig(steps=10, lr=1.0, **overrides)


@pytest.mark.parametrize(("step", "expected"), [
    (0, 0.25), (2, 0.75), (3, 1.0),  # warmup 4: (step + 1) / 4
    (4, 1.0),  # decay starts at 1: cos(0)
    (5, 0.9330127018922193),  # progress 1/6: (1 + cos(pi/6)) / 2 = (1 + 0.8660254...) / 2
    (7, 0.5),  # progress 3/6: (1 + cos(pi/2)) / 2
    (10, 0.0),  # the end of the run: cos(pi)
])
def test_cosine_with_warmup_matches_hand_computed_values(step, expected):
    assert lr_factor(step, _config(warmup_steps=4, lr_schedule="cosine")) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("step", "expected"), [(0, 0.5), (1, 1.0), (2, 1.0), (9, 1.0)])
def test_constant_with_warmup_is_flat_after_the_ramp(step, expected):
    assert lr_factor(step, _config(warmup_steps=2)) == pytest.approx(expected, abs=1e-12)


def test_cosine_without_warmup_starts_at_one_and_reaches_zero_at_the_last_step():
    config = _config(lr_schedule="cosine")
    assert lr_factor(0, config) == 1.0
    assert lr_factor(9, config) == pytest.approx((1 - 0.9510565162951535) / 2, abs=1e-12)  # cos(0.9 pi) = -cos(pi/10)
    assert lr_factor(10, config) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("schedule", ["linear", "Cosine", ""])
def test_unknown_schedule_is_refused_at_construction(schedule):
    with pytest.raises(ValueError, match="lr_schedule"):
        _config(lr_schedule=schedule)
