import dataclasses
from collections import Counter

import pytest
import torch

from softtoken.engine import Ramp, StageConfig
from softtoken.methods import Budget, Problem, ProgramConfig, ProgramMethod, anneal_inversion, build_method


@pytest.fixture(scope="module")
def reachable(tiny_lm):
    vocab = tiny_lm.allowed_ids
    outputs = tiny_lm.greedy_generate(torch.cartesian_prod(vocab, vocab), 3)
    return Counter(map(tuple, outputs.tolist())).most_common(1)[0][0]


def short(config: ProgramConfig, steps: int) -> ProgramConfig:
    return dataclasses.replace(config, stages=tuple({**stage, "steps": steps} for stage in config.stages))


def test_anneal_preset_values_are_locked():
    config = anneal_inversion()
    assert [stage["steps"] for stage in config.stages] == [100, 100, 50]
    assert [stage["trajectories"] for stage in config.stages] == [4, 4, 4]
    assert config.stages[1]["temperature"] == {"start": 1.0, "end": 0.1, "schedule": "exponential"}
    assert config.stages[2]["hard"] == {"start": 0.0, "end": 1.0, "schedule": "linear"}
    assert config.epochs == 250 and config.score_hard_samples
    assert build_method(preset="anneal").config == config


def test_program_method_inverts_a_reachable_target(tiny_lm, reachable):
    config = dataclasses.replace(short(anneal_inversion(), 40), eval_every=1)
    results = [ProgramMethod(config).run(Problem(lm=tiny_lm, target_ids=reachable, prompt_length=2, seed=s))
               for s in range(3)]
    winners = [r for r in results if r.exact_match]
    assert winners, [r.metrics for r in results]
    assert tiny_lm.greedy_generate(torch.tensor([winners[0].prompt_ids]), 3)[0].tolist() == list(reachable)
    assert winners[0].steps_run == winners[0].success_step


def test_program_method_is_reproducible_and_respects_step_budget(tiny_lm):
    config = short(anneal_inversion(), 3)
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=4)
    first, again = (ProgramMethod(config).run(problem, Budget(steps=5)) for _ in range(2))
    assert first.steps_run == 5 and first.history["loss/target"] == again.history["loss/target"]
    assert first.prompt_ids == again.prompt_ids


def test_program_config_from_yaml_like_data_with_objectives(tiny_lm):
    stage = StageConfig(steps=2, trajectories=2, temperature=Ramp.fixed(0.5)).to_dict()
    config = ProgramConfig(stages=({**stage, "objectives": [{"name": "target"}, {"name": "entropy", "weight": 0.1}]},))
    result = ProgramMethod(config).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2))
    assert result.steps_run == 2 and len(result.prompt_ids) == 2


@pytest.mark.parametrize("stages, message", [
    ((), "at least one stage"),
    (({"steps": 0},), "steps"),
    (({"steps": 2, "trajectories": 1}, {"steps": 2, "trajectories": 2}), "same number of trajectories"),
    (({"steps": 2, "objectives": [{"name": "nope"}]},), "unknown objective"),
    (({"steps": 2, "objectives": [{"name": "entropy", "bogus": 1}]},), "bogus"),
])
def test_program_config_rejects_bad_stages_at_construction(stages, message):
    with pytest.raises(ValueError, match=message):
        ProgramConfig(stages=stages)


def test_program_without_target_objective_is_rejected(tiny_lm):
    config = ProgramConfig(stages=({"steps": 2, "objectives": [{"name": "entropy"}]},))
    with pytest.raises(ValueError, match="target"):
        ProgramMethod(config).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2))
