"""One prompt for several targets, each in its own frame."""

import dataclasses

import pytest
import torch

from softtoken.lm.frame import Frame, FramedTarget
from softtoken.methods import GCG, Budget, DLMIConfig, GCGConfig, Problem, ProgramMethod, build_method
from softtoken.methods.harness import PromptJudge
from softtoken.methods.program import anneal_inversion
from softtoken.objectives import ObjectiveContext, TargetCE
from softtoken.objectives.target import MeanTarget, per_target

FRAMES = (Frame(prefix_ids=(12, 30), suffix_ids=(9,)), Frame(prefix_ids=(40,), suffix_ids=(21, 22)))
SEARCH = GCGConfig(search_width=16, topk=8, eval_every=1, init_text=" w5")


def planted(lm, seed: int, prompt_length: int = 2, target_length: int = 2) -> tuple[torch.Tensor, tuple]:
    """A random prompt and its greedy continuation in each frame: a universal problem it solves exactly."""
    prompt = torch.randint(0, lm.prompt_vocab_size, (prompt_length,), generator=torch.Generator().manual_seed(seed))
    ids = lm.to_model_ids(prompt).unsqueeze(0)
    targets = tuple(FramedTarget(tuple(lm.framed(f).greedy_generate(ids, target_length)[0].tolist()), f)
                    for f in FRAMES)
    return prompt, targets


def test_mean_target_averages_the_framed_losses_and_concatenates_predictions(tiny_lm):
    _, targets = planted(tiny_lm, 0)
    index = torch.randint(0, tiny_lm.prompt_vocab_size, (3, 2), generator=torch.Generator().manual_seed(1))
    mean = MeanTarget(parts=per_target(TargetCE(), targets))
    loss, predictions = mean.hard_loss_and_predictions(tiny_lm, index, ObjectiveContext())
    singles = [TargetCE().hard_loss_and_predictions(tiny_lm.framed(t.frame), index,
                                                    ObjectiveContext(target_ids=t.target_ids)) for t in targets]
    torch.testing.assert_close(loss, (singles[0][0] + singles[1][0]) / 2)
    assert torch.equal(predictions, torch.cat([singles[0][1], singles[1][1]], -1))
    assert [p.label for p in mean.parts] == ["target/0", "target/1"]


def test_universal_gcg_recovers_one_prompt_planted_for_two_targets(tiny_lm):
    prompt, targets = planted(tiny_lm, 4)
    for seed in range(3):
        problem = Problem(lm=tiny_lm, prompt_length=2, seed=seed, universal=targets)
        result = GCG(SEARCH).run(problem, Budget(steps=30))
        if result.exact_match:
            break
    assert result.exact_match, result.metrics
    assert result.target_ids == [i for t in targets for i in t.target_ids]
    report = result.metrics["eval/targets"]
    assert [entry["exact_match"] for entry in report] == [True, True]
    for target in targets:  # the bare model on each full sequence agrees
        ids = torch.tensor([target.frame.around(result.prompt_ids)])
        assert tiny_lm.greedy_generate(ids, 2)[0].tolist() == list(target.target_ids)
    assert [entry["target_ids"] for entry in result.context["universal"]] == [list(t.target_ids) for t in targets]


def test_universal_success_needs_every_target(tiny_lm):
    prompt, targets = planted(tiny_lm, 4)
    wrong = (targets[0], dataclasses.replace(targets[1], target_ids=(targets[1].target_ids[0], 3)))
    judge = PromptJudge(Problem(lm=tiny_lm, prompt_length=2, universal=wrong))
    score = judge.score(prompt, step=1)
    first, second = judge.per_target(tuple(tiny_lm.to_model_ids(prompt).tolist()))
    assert first.exact_match and not second.exact_match and not score.exact_match
    assert score.lcs_ratio == pytest.approx((first.lcs_ratio + second.lcs_ratio) / 2)
    assert score.output_ids == first.output_ids + second.output_ids


@pytest.mark.parametrize("merger", ["weighted_sum", "pcgrad", "mgda"])
def test_universal_dlmi_merges_one_objective_per_target(tiny_lm, merger):
    _, targets = planted(tiny_lm, 4)
    config = DLMIConfig(temperature=1.0, learning_rate=0.3, eval_every=1, batch_size=4, merger=merger)
    result = build_method("dlmi", None, dataclasses.asdict(config)).run(
        Problem(lm=tiny_lm, prompt_length=2, universal=targets), Budget(steps=3))
    assert len(result.metrics["eval/targets"]) == 2 and len(result.history["loss/target"]) == 3


def test_universal_program_expands_its_target_objective(tiny_lm):
    _, targets = planted(tiny_lm, 4)
    config = dataclasses.replace(anneal_inversion(), stages=tuple({**s, "steps": 2} for s in anneal_inversion().stages))
    result = ProgramMethod(config).run(Problem(lm=tiny_lm, prompt_length=2, universal=targets))
    assert len(result.metrics["eval/targets"]) == 2 and result.steps_run == 6


def test_single_target_methods_refuse_a_universal_problem(tiny_lm):
    _, targets = planted(tiny_lm, 4)
    with pytest.raises(ValueError, match="'soda' optimises a prompt for one target"):
        build_method(None, "soda-paper", {}).run(Problem(lm=tiny_lm, prompt_length=2, universal=targets),
                                                 Budget(steps=1))


def test_a_universal_problem_takes_no_target_ids(tiny_lm):
    _, targets = planted(tiny_lm, 4)
    with pytest.raises(ValueError, match="leave target_ids empty"):
        Problem(lm=tiny_lm, target_ids=(5,), prompt_length=2, universal=targets)
