import json
import logging
from dataclasses import dataclass, replace

import pytest
import torch

from softtoken.engine import (
    NonFiniteGradientError,
    OptimizerConfig,
    PositionBias,
    Ramp,
    StageConfig,
    WeightSchedule,
    run_stage,
)
from softtoken.engine.stage import build_initial_logits, combine_gradients, evaluate, prompt_masks, step_state
from softtoken.engine.variables import StageVariables
from softtoken.objectives import (
    AllowedTokens,
    BannedTokens,
    Entropy,
    Fluency,
    Objective,
    ObjectiveContext,
    TargetCE,
)

CONTEXT = ObjectiveContext(target_ids=(15, 50, 8))
SGD = OptimizerConfig(kind="sgd")


@dataclass(frozen=True, kw_only=True)
class NaNLoss(Objective):
    label: str = "broken"

    def loss(self, lm, probs, context):
        return probs.sum((1, 2)) * float("nan")


@dataclass(frozen=True, kw_only=True)
class NaNGradient(Objective):
    label: str = "broken"

    def loss(self, lm, probs, context):
        return torch.sqrt((probs - probs.detach()).sum((1, 2)))  # forward 0, gradient inf * 0


class ListTracker:
    def __init__(self):
        self.records = []

    def log(self, step, metrics):
        self.records.append((step, dict(metrics)))


def recompute(lm, result, config, objectives, step):
    """Weighted loss of the returned logits under the schedules of `step`."""
    state = step_state(config, objectives, step)
    masks = prompt_masks(lm, config, objectives, result.logits)
    variables = StageVariables(config, result.logits, objectives, torch.Generator())
    losses = evaluate(lm, variables, objectives, CONTEXT, state, masks, step=step, need_grad=False).losses
    weights = torch.tensor(state.weights)
    return (weights[:, None] * losses).sum(0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "StageConfig.steps must be >= 1, got 0"),
        ("trajectories", 0, "StageConfig.trajectories must be >= 1, got 0"),
        ("track_every", 0, "StageConfig.track_every must be >= 1, got 0"),
        ("prompt_length", 0, "StageConfig.prompt_length must be >= 1 or None, got 0"),
        ("lr", 0.0, "StageConfig.lr must be finite and > 0, got 0.0"),
        ("gumbel_init_divisor", -1.0, "StageConfig.gumbel_init_divisor must be finite and > 0, got -1.0"),
        ("min_lr_scale", -0.1, "StageConfig.min_lr_scale must be >= 0, got -0.1"),
        ("zero_norm_eps", -1.0, "StageConfig.zero_norm_eps must be >= 0, got -1.0"),
        ("seed", -1, "StageConfig.seed must be >= 0, got -1"),
        ("soft", Ramp(start=0.0, end=1.5), r"StageConfig.soft.end must be in \[0.0, 1.0\], got 1.5"),
        ("hard", Ramp(start=-0.5, end=0.0), r"StageConfig.hard.start must be in \[0.0, 1.0\], got -0.5"),
        ("temperature", Ramp(start=1.0, end=0.0), "StageConfig.temperature must stay > 0"),
        ("merger", "sum", "StageConfig.merger must be one of"),
        ("norm_alignment", "max", "StageConfig.norm_alignment must be one of"),
        ("normalize", "l1", "StageConfig.normalize must be one of"),
        ("decode", "beam", "StageConfig.decode must be one of"),
        ("fixed_positions", (1, 1), r"StageConfig.fixed_positions must be distinct and >= 0, got \(1, 1\)"),
        ("weight_schedules", (WeightSchedule(label="a", ramp=Ramp.fixed(1.0)),) * 2, "repeated labels"),
    ],
)
def test_stage_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        StageConfig(**{field: value})


def test_stage_config_rejects_positions_outside_prompt_length_and_negative_weights():
    with pytest.raises(ValueError, match=r"positions \[4\] are outside prompt_length=4"):
        StageConfig(prompt_length=4, fixed_positions=(4,))
    with pytest.raises(ValueError, match="ramp.start must be in"):
        WeightSchedule(label="target", ramp=Ramp(start=-1.0, end=1.0))


def test_step_state_is_exact_at_first_and_last_step():
    config = StageConfig(steps=4, soft=Ramp(start=0.0, end=1.0), hard=Ramp(start=1.0, end=0.0),
                         temperature=Ramp(start=1.0, end=0.01, schedule="quadratic"), lr=0.1,
                         scale_lr_by_temperature=True, min_lr_scale=0.05,
                         weight_schedules=(WeightSchedule(label="target", ramp=Ramp(start=0.2, end=0.4,
                                                                                    schedule="hinge")),))
    objectives = [TargetCE(weight=99.0), Fluency(weight=0.5)]
    first, last = step_state(config, objectives, 1), step_state(config, objectives, 4)
    temperature = 0.01 + 0.99 * 0.75**2
    assert (first.soft, first.hard, first.temperature) == (0.25, 0.75, pytest.approx(temperature))
    assert first.lr == pytest.approx(0.1 * (0.75 + 0.25 * temperature))
    assert first.weights == (0.2, 0.5)
    assert (last.soft, last.hard, last.temperature) == (1.0, 0.0, pytest.approx(0.01))
    assert last.lr == pytest.approx(0.1 * 0.05)  # 0.01 is below the floor
    assert last.weights == (0.4, 0.5)


def test_fixed_positions_never_change_and_decode_to_their_biased_token(tiny_lm):
    config = StageConfig(steps=3, trajectories=2, prompt_length=4, fixed_positions=(1,), gumbel_init=True,
                         sequence_bias=(PositionBias(position=1, token_id=20, value=5.0),), lr=1.0)
    start = build_initial_logits(tiny_lm, config, None, torch.Generator().manual_seed(config.seed))
    result = run_stage(tiny_lm, config, [TargetCE()], CONTEXT)
    assert torch.equal(result.logits[:, 1], start[:, 1])
    assert result.logits[:, 1].max().item() == 5.0 and result.logits[:, 1].min().item() == 0.0
    assert all(ids[1] == 20 for snapshot in result.history for ids in snapshot.prompt_ids)
    assert not torch.equal(result.logits[:, 0], start[:, 0])


@pytest.mark.parametrize("save_best", [True, False])
def test_returned_logits_recompute_to_the_reported_loss(tiny_lm, save_best):
    config = StageConfig(steps=4, trajectories=3, prompt_length=3, gumbel_init=True, lr=2.0, optimizer=SGD,
                         save_best=save_best)
    objectives = [TargetCE(), Entropy(weight=0.1)]
    result = run_stage(tiny_lm, config, objectives, CONTEXT)
    torch.testing.assert_close(recompute(tiny_lm, result, config, objectives, 4), torch.tensor(result.loss),
                               rtol=1e-5, atol=1e-6)
    final = result.history[-1]
    assert final.final and final.prompt_ids == result.prompt_ids and final.loss == result.loss
    if save_best:
        seen = [snapshot.loss for snapshot in result.history]
        assert all(result.loss[b] == min(loss[b] for loss in seen) for b in range(3))
    else:
        assert result.updates == [4, 4, 4]


def test_save_best_pairs_each_loss_with_the_logits_before_its_update(tiny_lm):
    # A huge lr makes later steps worse, so the best is usually an early, pre-update state.
    config = StageConfig(steps=3, trajectories=2, prompt_length=3, gumbel_init=True, lr=50.0, optimizer=SGD)
    result = run_stage(tiny_lm, config, [TargetCE()], CONTEXT)
    for b, updates in enumerate(result.updates):
        assert result.history[-1].loss[b] == (result.history[updates].loss[b] if updates < 3 else result.loss[b])
    torch.testing.assert_close(recompute(tiny_lm, result, config, [TargetCE()], 3), torch.tensor(result.loss),
                               rtol=1e-5, atol=1e-6)


def test_trajectories_are_independent_of_their_batch_mates(tiny_lm):
    generator = torch.Generator().manual_seed(1)
    start = torch.randn(3, 3, tiny_lm.prompt_vocab_size, generator=generator)
    config = StageConfig(steps=3, trajectories=3, optimizer=SGD, merger="pcgrad", norm_alignment="match_first")
    objectives = [TargetCE(), Fluency(weight=0.3)]
    batched = run_stage(tiny_lm, config, objectives, CONTEXT, initial_logits=start)
    single_config = StageConfig(steps=3, trajectories=1, optimizer=SGD, merger="pcgrad", norm_alignment="match_first")
    for b in range(3):
        single = run_stage(tiny_lm, single_config, objectives, CONTEXT, initial_logits=start[b : b + 1])
        torch.testing.assert_close(single.logits[0], batched.logits[b], rtol=1e-4, atol=1e-4)


def test_stage_is_reproducible_by_seed_and_seeds_differ(tiny_lm):
    config = StageConfig(steps=2, trajectories=2, prompt_length=3, gumbel_init=True, decode="categorical", seed=7)
    first = run_stage(tiny_lm, config, [TargetCE()], CONTEXT)
    again = run_stage(tiny_lm, config, [TargetCE()], CONTEXT)
    assert torch.equal(first.logits, again.logits) and first.to_dict() == again.to_dict()
    other = run_stage(tiny_lm, StageConfig(steps=2, trajectories=2, prompt_length=3, gumbel_init=True, seed=8),
                      [TargetCE()], CONTEXT)
    assert not torch.equal(first.logits, other.logits)
    assert not torch.equal(first.logits[0], first.logits[1])  # Gumbel init separates the trajectories


def test_tracking_keeps_ids_and_losses_at_the_interval_and_a_final_snapshot(tiny_lm):
    tracker = ListTracker()
    config = StageConfig(steps=5, trajectories=2, prompt_length=3, track_every=2)
    result = run_stage(tiny_lm, config, [TargetCE(), Entropy(weight=0.0)], CONTEXT, tracker=tracker)
    assert [(s.step, s.final) for s in result.history] == [(2, False), (4, False), (5, False), (5, True)]
    assert [step for step, _ in tracker.records] == [2, 4, 5]
    assert {"loss/total", "objective/target/loss", "objective/entropy/weight", "relax/temperature", "optim/lr"} <= set(
        tracker.records[0][1])
    data = result.to_dict()
    assert "logits" not in data and json.loads(json.dumps(data)) == data
    assert len(data["history"][0]["prompt_ids"]) == 2 and len(data["history"][0]["prompt_ids"][0]) == 3


def test_loss_falls_on_a_toy_target(tiny_lm):
    config = StageConfig(steps=15, trajectories=2, prompt_length=3, gumbel_init=True, lr=0.5)
    result = run_stage(tiny_lm, config, [TargetCE()], CONTEXT)
    assert all(result.loss[b] < result.history[0].loss[b] for b in range(2))


@pytest.mark.parametrize(("objective", "what"), [(NaNLoss(), "loss"), (NaNGradient(), "gradient")])
def test_non_finite_values_stop_the_run_naming_objective_and_step(tiny_lm, objective, what):
    config = StageConfig(steps=2, prompt_length=2)
    with pytest.raises(NonFiniteGradientError, match=f"non-finite {what} from objective 'broken' at step 1"):
        run_stage(tiny_lm, config, [TargetCE(), objective], CONTEXT)


def test_unknown_weight_schedule_label_warns_and_is_ignored(tiny_lm, caplog):
    schedule = WeightSchedule(label="fluenc", ramp=Ramp(start=0.0, end=1.0))
    config = StageConfig(steps=1, prompt_length=2, weight_schedules=(schedule,))
    with caplog.at_level(logging.WARNING, logger="softtoken.engine.stage"):
        result = run_stage(tiny_lm, config, [TargetCE(weight=2.0)], CONTEXT)
    assert "weight schedule for 'fluenc' ignored" in caplog.text
    assert result.history[0].state["weights"] == [2.0]


def test_run_stage_fails_fast_on_bad_setup(tiny_lm):
    with pytest.raises(ValueError, match="labels must be unique"):
        run_stage(tiny_lm, StageConfig(prompt_length=2), [TargetCE(), TargetCE()], CONTEXT)
    with pytest.raises(ValueError, match="needs ObjectiveContext.target_ids"):
        run_stage(tiny_lm, StageConfig(prompt_length=2), [TargetCE()])
    with pytest.raises(ValueError, match="set prompt_length, initial_text or pass initial_logits"):
        run_stage(tiny_lm, StageConfig(), [TargetCE()], CONTEXT)
    with pytest.raises(ValueError, match="initial_logits has 1 trajectories, config has 2"):
        run_stage(tiny_lm, StageConfig(trajectories=2), [TargetCE()], CONTEXT,
                  initial_logits=torch.zeros(1, 2, tiny_lm.prompt_vocab_size))
    with pytest.raises(ValueError, match="prompt_length=3 but the initial prompt has 2 tokens"):
        run_stage(tiny_lm, StageConfig(prompt_length=3, initial_text="w1 w2"), [TargetCE()], CONTEXT)


def test_initial_text_sets_the_argmax_and_rejects_tokens_outside_the_vocabulary(tiny_lm):
    config = StageConfig(initial_text="w3 w4 w5", trajectories=2, initial_scale=4.0)
    start = build_initial_logits(tiny_lm, config, None, torch.Generator().manual_seed(0))
    ids = tiny_lm.to_model_ids(start.argmax(-1))
    assert ids.tolist() == [tiny_lm.encode("w3 w4 w5")] * 2 and start.max().item() == 4.0
    with pytest.raises(ValueError, match=r"StageConfig.initial_text: token ids \[1\] are not in the prompt vocabulary"):
        build_initial_logits(tiny_lm, StageConfig(initial_text="w3 <s>"), None, torch.Generator())


def test_token_mask_objective_keeps_every_decoded_token_out_of_the_banned_set(tiny_lm):
    banned = tuple(range(4, 34))
    config = StageConfig(steps=3, trajectories=2, prompt_length=3, gumbel_init=True, lr=1.0, decode="categorical")
    objectives = [TargetCE(), BannedTokens(token_ids=banned, mode="mask")]
    result = run_stage(tiny_lm, config, objectives, CONTEXT)
    decoded = {token for snapshot in result.history for ids in snapshot.prompt_ids for token in ids}
    assert decoded and not decoded & set(banned)
    assert all(loss == [0.0, 0.0] for loss in (s.objective_losses["banned_tokens"] for s in result.history))


def test_token_masks_reject_forbidden_fixed_tokens_and_an_empty_vocabulary(tiny_lm):
    fixed = StageConfig(steps=1, initial_text="w3 w4", fixed_positions=(0,))
    with pytest.raises(ValueError, match=r"fixed positions \[0\] hold a token an objective forbids"):
        run_stage(tiny_lm, fixed, [TargetCE(), BannedTokens(token_ids=tuple(tiny_lm.encode("w3")), mode="mask")],
                  CONTEXT)
    with pytest.raises(ValueError, match="forbid every token"):
        run_stage(tiny_lm, StageConfig(steps=1, prompt_length=2),
                  [TargetCE(), AllowedTokens(token_ids=(1,), mode="mask")], CONTEXT)


def test_score_discrete_snapshots_carry_the_loss_of_the_argmax_prompt(tiny_lm):
    tracker = ListTracker()
    config = StageConfig(steps=2, trajectories=2, prompt_length=3, gumbel_init=True, score_discrete=True)
    result = run_stage(tiny_lm, config, [TargetCE()], CONTEXT, tracker=tracker)
    index = torch.searchsorted(tiny_lm.allowed_ids, torch.tensor(result.prompt_ids))
    one_hot = torch.nn.functional.one_hot(index, tiny_lm.prompt_vocab_size).float()
    expected = TargetCE().loss(tiny_lm, one_hot, CONTEXT)
    torch.testing.assert_close(torch.tensor(result.history[-1].discrete_loss), expected, rtol=1e-5, atol=1e-6)
    assert "loss/discrete_total_min" in tracker.records[0][1]
    plain = run_stage(tiny_lm, replace(config, score_discrete=False), [TargetCE()], CONTEXT)
    assert plain.history[0].discrete_loss is None


def test_stage_config_round_trips_through_plain_dicts():
    config = StageConfig(steps=7, temperature=Ramp(start=1.0, end=0.1, schedule="cosine"),
                         optimizer=OptimizerConfig(kind="sgd"), fixed_positions=(0, 2),
                         sequence_bias=(PositionBias(position=0, token_id=9, value=3.0),),
                         weight_schedules=(WeightSchedule(label="fluency", ramp=Ramp(start=0.0, end=1.0)),))
    data = config.to_dict()
    assert json.loads(json.dumps(data)) == data and data["temperature"]["schedule"] == "cosine"
    assert StageConfig.from_dict(data) == config
    assert StageConfig.from_dict({}) == StageConfig()
    with pytest.raises(ValueError, match=r"unknown StageConfig fields \['step'\]"):
        StageConfig.from_dict({"step": 3})


def test_combine_gradients_zeroes_fixed_rows_before_normalising():
    grads = torch.zeros(1, 1, 3, 2)
    grads[0, 0, 0] = torch.tensor([3.0, 4.0])
    grads[0, 0, 1] = torch.tensor([100.0, 0.0])  # fixed: must neither move nor count in the norm
    config = StageConfig(normalize="unit", fixed_positions=(1,))
    state = step_state(config, [TargetCE()], 1)
    direction = combine_gradients(grads, state, config, torch.tensor([False, True, False]))
    torch.testing.assert_close(direction[0, 0], torch.tensor([0.6, 0.8]))
    assert torch.equal(direction[0, 1:], torch.zeros(2, 2))


@pytest.mark.parametrize(("scaled", "expected_lr"), [(False, 0.5), (True, 0.5 * (0.5 + 0.5 * 0.25))])
def test_unit_normalised_sgd_step_moves_logits_by_the_effective_lr(tiny_lm, scaled, expected_lr):
    start = torch.randn(2, 3, tiny_lm.prompt_vocab_size, generator=torch.Generator().manual_seed(0))
    config = StageConfig(steps=1, trajectories=2, lr=0.5, optimizer=SGD, normalize="unit", save_best=False,
                         soft=Ramp.fixed(0.5), temperature=Ramp.fixed(0.25), scale_lr_by_temperature=scaled)
    result = run_stage(tiny_lm, config, [TargetCE()], CONTEXT, initial_logits=start)
    moved = (result.logits - start).flatten(1).norm(dim=-1)
    torch.testing.assert_close(moved, torch.full((2,), expected_lr), rtol=1e-5, atol=1e-6)
    assert result.history[0].state["lr"] == pytest.approx(expected_lr)


def test_stage_config_rejects_an_unknown_compute_dtype():
    with pytest.raises(ValueError, match="compute_dtype"):
        StageConfig(compute_dtype="float64")
