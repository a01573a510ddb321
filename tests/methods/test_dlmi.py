import dataclasses
import json
from collections import Counter

import pytest
import torch

from softtoken.lm.softlm import has_cxx_compiler
from softtoken.methods import DLMI, Budget, DLMIConfig, NonFiniteLossError, Problem, Result, dlmi_paper, dlmi_paper_free
from softtoken.methods.presets import PRESETS, get_preset, with_options

FAST = DLMIConfig(temperature=1.0, learning_rate=0.3, eval_every=1, batch_size=4)


@pytest.fixture(scope="module")
def reachable(tiny_lm):
    """The 3-token output the tiny model produces greedily from the most 2-token prompts (found by brute force)."""
    vocab = tiny_lm.allowed_ids
    outputs = tiny_lm.greedy_generate(torch.cartesian_prod(vocab, vocab), 3)
    return Counter(map(tuple, outputs.tolist())).most_common(1)[0][0]


def test_dlmi_recovers_an_exact_discrete_prompt(tiny_lm, reachable):
    results = [DLMI(FAST).run(Problem(lm=tiny_lm, target_ids=reachable, prompt_length=2, seed=s), Budget(steps=100))
               for s in range(3)]
    winners = [r for r in results if r.exact_match]
    assert winners, [r.metrics for r in results]
    best = winners[0]
    assert tiny_lm.greedy_generate(torch.tensor([best.prompt_ids]), 3)[0].tolist() == list(reachable)
    assert best.success_step is not None and best.success_step <= best.steps_run
    assert best.output_ids == list(reachable)


def test_dlmi_is_reproducible_for_same_seed_and_differs_across_seeds(tiny_lm, reachable):
    def run(seed):
        return DLMI(FAST).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=seed), Budget(steps=5))

    first, again, other = run(1), run(1), run(2)
    assert first.history["loss/target"] == again.history["loss/target"] and first.prompt_ids == again.prompt_ids
    assert first.history["loss/target"] != other.history["loss/target"]


@pytest.mark.parametrize("options", [
    {"teacher_forcing": False},
    {"teacher_forcing": False, "bptt": True, "bptt_learnable_temperature": True,
     "bptt_decouple_learnable_temperature": True, "bptt_stgs_hard": True},
    {"teacher_forcing": False, "bptt": True, "bptt_hidden_state_conditioning": True},
    {"stgs_hard": True, "stgs_hard_method": "categorical", "learnable_temperature": False,
     "decouple_learnable_temperature": False, "gumbel_kind": "standard"},
    {"compute_dtype": "bfloat16"},
])
def test_dlmi_forward_modes_run_and_report_history(tiny_lm, options):
    config = dataclasses.replace(FAST, **options)
    result = DLMI(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=0), Budget(steps=3))
    assert result.steps_run == 3 and len(result.history["loss/target"]) == 3
    per_pass = 3 + 3 - 1
    assert result.backward_tokens == 3 * 4 * per_pass
    # training passes + the engine's final scoring pass + one greedy pass per distinct evaluated prompt
    evaluations = result.forward_tokens - result.backward_tokens - 4 * per_pass
    assert evaluations % per_pass == 0 and 1 <= evaluations // per_pass <= 4


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_model_gives_the_eager_trajectory(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=0)
    eager = DLMI(FAST).run(problem, Budget(steps=3))
    compiled = DLMI(dataclasses.replace(FAST, compile_model=True)).run(problem, Budget(steps=3))
    assert compiled.history["loss/target"] == pytest.approx(eager.history["loss/target"], rel=1e-3)  # fused kernels round differently
    assert compiled.prompt_ids == eager.prompt_ids


def test_learnable_temperatures_move(tiny_lm):
    result = DLMI(dataclasses.replace(FAST, temperature_theta_init="zero")).run(
        Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=0), Budget(steps=4))
    taus = result.history["relax/tau"]
    assert taus[0] == [1.0, 1.0, 1.0] and taus[-1] != taus[0] and len(taus[-1]) == 3


@pytest.mark.parametrize("options, message", [
    ({"decouple_learnable_temperature": True, "learnable_temperature": False}, "decouple_learnable_temperature"),
    ({"bptt": True}, "teacher_forcing=False"),
    ({"bptt_stgs_hard": True}, "need bptt=True"),
    ({"temperature": 0.0}, "temperature"),
    ({"losses": "hinge"}, "losses"),
    ({"batch_size": 0}, "batch_size"),
    ({"init_std": float("inf")}, "init_std"),
    ({"stgs_hard_method": "nearest"}, "stgs_hard_method"),
    ({"compute_dtype": "float64"}, "compute_dtype"),
])
def test_invalid_configs_are_rejected_at_construction(options, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(DLMIConfig(), **options)


def test_bad_problems_are_rejected(tiny_lm):
    with pytest.raises(ValueError, match="empty"):
        Problem(lm=tiny_lm, target_ids=(), prompt_length=3)
    for length in (0, -2):
        with pytest.raises(ValueError, match=str(length)):
            Problem(lm=tiny_lm, target_ids=(5,), prompt_length=length)
    with pytest.raises(ValueError, match="out of the model's vocabulary"):
        Problem(lm=tiny_lm, target_ids=(10_000,), prompt_length=2)
    with pytest.raises(ValueError, match="steps"):
        Budget(steps=0)


def test_non_finite_loss_stops_with_clear_error(tiny_lm, monkeypatch):
    def poisoned(embeds, target):
        return torch.full((embeds.shape[0], len(target), tiny_lm.output_vocab_size), float("nan"))

    monkeypatch.setattr(tiny_lm, "teacher_forced_logits", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        DLMI(FAST).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2), Budget(steps=2))


def test_time_budget_stops_the_run(tiny_lm):
    result = DLMI(dataclasses.replace(FAST, epochs=100_000)).run(
        Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3), Budget(seconds=0.5))
    assert 1 <= result.steps_run < 100_000 and result.wall_time_s < 5


def test_presets_are_locked():
    paper = dlmi_paper()
    assert (paper.temperature, paper.learnable_temperature, paper.decouple_learnable_temperature) == (100.0, True, True)
    assert (paper.stgs_hard, paper.teacher_forcing, paper.bptt) == (False, True, False)
    assert (paper.learning_rate, paper.batch_size, paper.epochs, paper.init_strategy) == (0.1, 8, 2048, "randn")
    assert dlmi_paper_free() == dataclasses.replace(paper, teacher_forcing=False)
    assert get_preset("dlmi-paper") == ("dlmi", paper)
    demo = get_preset("dlmi-demo")[1]
    assert (demo.temperature, demo.learnable_temperature, demo.stgs_hard, demo.score_hard_samples) == (1.0, False, True, True)
    assert (demo.learning_rate, demo.batch_size, demo.teacher_forcing, demo.eval_every) == (0.1, 8, True, 1)
    assert set(PRESETS) >= {"dlmi-paper", "dlmi-paper-free"}
    with pytest.raises(ValueError, match="available"):
        get_preset("nope")
    with pytest.raises(ValueError, match="bogus"):
        with_options(paper, {"bogus": 1})


def test_result_round_trips_through_json(tiny_lm):
    result = DLMI(FAST).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2), Budget(steps=2))
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_hard_sample_scoring_reports_only_confirmed_prompts(tiny_lm, reachable):
    config = dataclasses.replace(FAST, stgs_hard=True, score_hard_samples=True, eval_every=1000)
    results = [DLMI(config).run(Problem(lm=tiny_lm, target_ids=reachable, prompt_length=2, seed=s), Budget(steps=60))
               for s in range(3)]
    winners = [r for r in results if r.exact_match]
    assert winners, [r.metrics for r in results]
    for result in winners:
        assert tiny_lm.greedy_generate(torch.tensor([result.prompt_ids]), 3)[0].tolist() == list(reachable)
        assert result.steps_run == result.success_step  # stopped as soon as a sample was confirmed


def test_hard_sample_scoring_needs_straight_through_teacher_forcing():
    with pytest.raises(ValueError, match="score_hard_samples"):
        DLMIConfig(score_hard_samples=True)


def test_invert_api_runs_from_text(tiny_lm):
    from softtoken import invert

    result = invert("w5 w6", tiny_lm, prompt_length=2, steps=2, temperature=1.0)
    assert result.target_ids == [9, 10] and result.steps_run <= 2 and result.config["temperature"] == 1.0
    with pytest.raises(ValueError, match="empty"):
        invert("", tiny_lm)


def test_gradient_diagnostics_do_not_change_the_trajectory(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=2)
    plain = DLMI(FAST).run(problem, Budget(steps=6))
    watched = DLMI(dataclasses.replace(FAST, stgs_grad_variance_period=2, stgs_grad_variance_samples=3,
                                       stgs_grad_bias_period=3, stgs_grad_bias_samples=2,
                                       stgs_grad_bias_reference_samples=2)).run(problem, Budget(steps=6))
    assert watched.history["loss/target"] == plain.history["loss/target"] and watched.prompt_ids == plain.prompt_ids
    assert watched.history["diag/step"] == [2, 3, 4, 6]
    variances = [v for v in watched.history["diag/stgs_grad_variance_max"]]
    assert len(variances) == 3 and all(v > 0 for v in variances)  # steps 2, 4, 6
    assert len(watched.history["diag/stgs_grad_bias_abs_max"]) == 2  # steps 3, 6


def test_gradient_diagnostics_options_are_validated():
    with pytest.raises(ValueError, match="stgs_grad_variance_samples >= 2"):
        DLMIConfig(stgs_grad_variance_period=5, stgs_grad_variance_samples=1)
    with pytest.raises(ValueError, match="bptt"):
        DLMIConfig(teacher_forcing=False, bptt=True, stgs_grad_variance_period=5, stgs_grad_variance_samples=2)


def test_forward_token_budget_stops_the_run(tiny_lm):
    config = dataclasses.replace(FAST, eval_every=1000)
    result = DLMI(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3), Budget(forward_tokens=50))
    per_step = 4 * (3 + 3 - 1)
    assert result.steps_run == 3  # 2 steps spend 40 < 50 tokens, the third reaches 60
    assert result.backward_tokens == 3 * per_step
    with pytest.raises(ValueError, match="forward_tokens"):
        Budget(forward_tokens=0)
