"""The shared judge: greedy decoding of discrete prompts, batched and cached by ids."""

import torch

from softtoken.lm.evaluation import evaluate_prompts
from softtoken.methods import Problem
from softtoken.methods.harness import PromptJudge


def test_judge_decodes_the_new_prompts_in_one_batch_and_scores_each_as_alone(tiny_lm, planted_target, monkeypatch):
    target = planted_target(3, 2, 3)
    judge = PromptJudge(Problem(lm=tiny_lm, target_ids=target, prompt_length=2))
    prompts = torch.randint(0, tiny_lm.prompt_vocab_size, (3, 2), generator=torch.Generator().manual_seed(5))
    prompts[2] = prompts[0]  # a repeat within the call is decoded once
    alone = [evaluate_prompts(tiny_lm, tiny_lm.to_model_ids(row)[None], target)[0] for row in prompts]
    batches = []
    decode = tiny_lm.greedy_generate
    monkeypatch.setattr(tiny_lm, "greedy_generate", lambda ids, steps: batches.append(len(ids)) or decode(ids, steps))
    scores = judge.score_many(prompts, step=4)
    assert batches == [2]
    assert scores == alone
    assert judge.best.score == max(alone, key=lambda score: score.key()) and judge.best.step == 4
    judge.score_many(prompts[:2], step=5)  # judged before: read from the cache
    assert batches == [2]
