from dataclasses import replace

import pytest
import torch

from softtoken.engine import Ramp, Stage, StageConfig, run_program, run_stage, sized, stages_with
from softtoken.engine.program import with_stage_seeds
from softtoken.objectives import Entropy, ObjectiveContext, TargetCE

CONTEXT = ObjectiveContext(target_ids=(15, 50, 8))
OBJECTIVES = (TargetCE(), Entropy(weight=0.05))


class ListTracker:
    def __init__(self):
        self.steps = []

    def log(self, step, metrics):
        self.steps.append(step)


def test_program_stage_continues_from_previous_stage_logits(tiny_lm):
    first = StageConfig(steps=3, trajectories=2, prompt_length=3, gumbel_init=True, lr=0.5)
    second = StageConfig(steps=2, trajectories=2, prompt_length=3, lr=0.5, seed=1)
    tracker = ListTracker()
    result = run_program(tiny_lm, stages_with((first, second), OBJECTIVES), CONTEXT, tracker=tracker)
    alone = run_stage(tiny_lm, first, OBJECTIVES, CONTEXT)
    handed, continued = result.stages
    assert torch.equal(handed.logits, alone.logits)
    # Stage 2's first step scores exactly what stage 1 returned (same schedules, so the same loss).
    assert continued.history[0].prompt_ids == handed.prompt_ids
    torch.testing.assert_close(torch.tensor(continued.history[0].loss), torch.tensor(handed.loss))
    assert result.final is continued and all(c <= h for c, h in zip(continued.loss, handed.loss, strict=True))
    assert tracker.steps == [1, 2, 3, 4, 5]


def test_program_starts_from_given_initial_logits(tiny_lm):
    start = torch.randn(1, 2, tiny_lm.prompt_vocab_size, generator=torch.Generator().manual_seed(0))
    config = StageConfig(steps=1, lr=0.5)
    result = run_program(tiny_lm, stages_with((config,), OBJECTIVES), CONTEXT, initial_logits=start)
    assert result.final.history[0].prompt_ids == [tiny_lm.to_model_ids(start[0].argmax(-1)).tolist()]


def test_program_rejects_empty_programs_and_stages():
    with pytest.raises(ValueError, match="at least one stage"):
        run_program(None, ())
    with pytest.raises(ValueError, match="Stage.objectives must hold at least one objective"):
        Stage(config=StageConfig(), objectives=())


def test_sized_sets_length_and_trajectories_on_every_stage():
    stages = (StageConfig(), replace(StageConfig(), temperature=Ramp.fixed(0.5)))
    configs = sized(stages, prompt_length=6, trajectories=3)
    assert [(c.prompt_length, c.trajectories) for c in configs] == [(6, 3), (6, 3)]
    assert configs[1].temperature == Ramp.fixed(0.5)



def test_program_seed_replaces_stage_seeds_reproducibly():
    stages = stages_with((StageConfig(seed=3), StageConfig(seed=3)), OBJECTIVES)
    seeds = [config.seed for config in with_stage_seeds(stages, 11)]
    assert seeds == [config.seed for config in with_stage_seeds(stages, 11)]
    assert len(set(seeds)) == 2 and 3 not in seeds
    assert seeds != [config.seed for config in with_stage_seeds(stages, 12)]
    with pytest.raises(ValueError, match="program seed must be >= 0, got -1"):
        with_stage_seeds(stages, -1)


def test_program_seed_drives_gumbel_init_of_the_first_stage(tiny_lm):
    stages = stages_with((StageConfig(steps=1, prompt_length=2, gumbel_init=True),), OBJECTIVES)
    first = run_program(tiny_lm, stages, CONTEXT, seed=5).final.logits
    assert torch.equal(first, run_program(tiny_lm, stages, CONTEXT, seed=5).final.logits)
    assert not torch.equal(first, run_program(tiny_lm, stages, CONTEXT, seed=6).final.logits)
