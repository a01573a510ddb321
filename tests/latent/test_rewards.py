"""Oracles 8 and 9: the relative-length reward on hand-built groups, and advantage normalisation."""

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.evaluate import Scored
from softtoken.latent.rewards import group_advantages, group_rewards

CONFIG = opts.resolve("grpo", "num_gen_4/batch_size_8/rel_len_penalty_1e-1/rel_len_reward_1e-1/rel_len_acc_req_ALL")


def s(correct: bool, length: int, format_ok: bool = True) -> Scored:
    return Scored(format_ok=format_ok, correct=correct and format_ok, length=length, latent_steps=length - 2)


def test_reward_penalises_bad_format():
    rewards = group_rewards([s(False, 5, format_ok=False), s(False, 5), s(False, 5), s(False, 5)], CONFIG)
    assert rewards[0] == pytest.approx(rewards[1] - 1.0)


def test_reward_prefers_shorter_when_all_correct():
    rewards = group_rewards([s(True, 3), s(True, 5), s(True, 8), s(True, 4)], CONFIG)
    assert rewards.index(max(rewards)) == 0 and rewards.index(min(rewards)) == 2


def test_reward_prefers_longer_correct_when_mixed():
    rewards = group_rewards([s(True, 3), s(True, 8), s(False, 9), s(False, 2)], CONFIG)
    assert rewards[1] > rewards[0] > rewards[2]
    assert rewards[2] == rewards[3]  # wrong answers get no length term


def test_reward_length_term_is_zero_for_zero_range_and_all_wrong():
    assert group_rewards([s(True, 4)] * 4, CONFIG) == [1.0] * 4
    assert group_rewards([s(False, 3), s(False, 9), s(False, 4), s(False, 4)], CONFIG) == [0.0] * 4


def test_reward_accuracy_requirement_fraction_switches_sign():
    half = opts.resolve("grpo", "num_gen_4/batch_size_8/rel_len_penalty_1e-1/rel_len_reward_1e-1/rel_len_acc_req_50p")
    group = [s(True, 3), s(True, 8), s(False, 9), s(False, 2)]
    assert group_rewards(group, half)[0] > group_rewards(group, half)[1]  # 2 of 4 meets 50%: shorter wins


def test_reward_rejects_incomplete_groups():
    with pytest.raises(ValueError, match="num_generations=4"):
        group_rewards([s(True, 3)] * 6, CONFIG)


def test_advantages_match_unbiased_std_with_epsilon():
    rewards = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.5, -1.0, 2.0])
    got = group_advantages(rewards, 4, 1e-4)
    for g in range(2):
        r = rewards[4 * g : 4 * g + 4]
        expected = (r - r.mean()) / (r.std(unbiased=True) + 1e-4)
        assert torch.allclose(got[4 * g : 4 * g + 4], expected)
    assert torch.equal(group_advantages(torch.ones(4), 4, 1e-4), torch.zeros(4))
