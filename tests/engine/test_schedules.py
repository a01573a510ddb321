import math

import pytest

from softtoken.engine.schedules import SCHEDULES, Ramp, get_schedule, progress, register_schedule

TOTAL = 4


@pytest.mark.parametrize(
    ("name", "start", "end", "first"),
    [
        ("constant", 2.0, 2.0, 2.0),
        ("linear", 1.0, 0.0, 0.75),
        ("cosine", 1.0, 0.0, 0.5 * (1.0 + math.cos(math.pi / 4))),
        ("exponential", 1.0, 0.01, 0.01 ** 0.25),
        ("hinge", 0.2, 0.4, 0.2),
        ("quadratic", 1.0, 0.0, 0.5625),
    ],
)
def test_schedule_values_exact_at_first_and_last_step(name, start, end, first):
    schedule = get_schedule(name)(start, end)
    assert schedule(1, TOTAL) == pytest.approx(first, abs=1e-15)
    assert schedule(TOTAL, TOTAL) == pytest.approx(end, abs=1e-15)


def test_hinge_stays_flat_until_start_over_end_then_follows_the_line():
    schedule = get_schedule("hinge")(0.2, 0.4)
    assert [schedule(step, 65) for step in (0, 32)] == [0.2, 0.2]
    assert schedule(33, 65) == pytest.approx(0.4 * 33 / 65, abs=1e-15)
    assert schedule(49, 65) == pytest.approx(0.4 * 49 / 65, abs=1e-15)
    assert schedule(65, 65) == 0.4


def test_progress_clips_at_one_and_rejects_bad_arguments():
    assert progress(8, 4) == 1.0
    with pytest.raises(ValueError, match="total must be >= 1"):
        progress(1, 0)
    with pytest.raises(ValueError, match="step must be >= 0"):
        progress(-1, 4)


@pytest.mark.parametrize(
    ("name", "start", "end", "message"),
    [
        ("constant", 1.0, 0.5, "end == start"),
        ("exponential", 0.0, 1.0, "start > 0 and end > 0"),
        ("exponential", 1.0, -1.0, "start > 0 and end > 0"),
        ("hinge", 0.4, 0.2, "start < end"),
        ("hinge", 0.4, 0.4, "start < end"),
        ("linear", math.nan, 1.0, "finite"),
    ],
)
def test_ramp_rejects_arguments_its_schedule_cannot_use(name, start, end, message):
    with pytest.raises(ValueError, match=message):
        Ramp(start=start, end=end, schedule=name)


def test_ramp_rejects_unknown_schedule_listing_sorted_keys():
    with pytest.raises(ValueError, match=r"unknown schedule 'step'; available: \['constant', 'cosine'"):
        Ramp(start=1.0, end=0.0, schedule="step")


def test_register_schedule_rejects_duplicate_name():
    with pytest.raises(ValueError, match="already registered"):
        register_schedule("linear")(lambda start, end: lambda step, total: start)
    assert sorted(SCHEDULES) == ["constant", "cosine", "exponential", "hinge", "linear", "quadratic"]


def test_ramp_fixed_is_constant_and_within_checks_both_endpoints():
    assert Ramp.fixed(0.3).value(1, 10) == 0.3
    Ramp(start=0.0, end=1.0).within("StageConfig.soft", 0.0, 1.0)
    with pytest.raises(ValueError, match=r"StageConfig.soft.end must be in \[0.0, 1.0\], got 2.0"):
        Ramp(start=0.0, end=2.0).within("StageConfig.soft", 0.0, 1.0)
