"""GRPO reward of the paper (section 3.3 of the spec) and group-relative advantages, on plain numbers.

r_i = -w_f [not f_i] + w_a [c_i] + rel_i, with, over the correct completions V of the group,
rel_i = kappa (L_i - mean_V L) / (max_V L - min_V L) for i in V (0 if the range is 0 or i not in V);
kappa = -lambda_pen when |V| >= req * G (shorter is better), +lambda_rew when 0 < |V| < req * G
(longer correct is better on hard problems), and the term is 0 when |V| = 0.
"""

from __future__ import annotations

import torch

from softtoken.latent.evaluate import Scored
from softtoken.latent.options import GrpoConfig


def group_rewards(scored: list[Scored], config: GrpoConfig) -> list[float]:
    """Rewards for consecutive groups of `num_generations` completions of the same prompt."""
    size = config.num_generations
    if not scored or len(scored) % size:
        raise ValueError(f"got {len(scored)} completions, need a positive multiple of num_generations={size}")
    rewards = []
    for start in range(0, len(scored), size):
        rewards += _one_group(scored[start : start + size], config)
    return rewards


def _one_group(group: list[Scored], config: GrpoConfig) -> list[float]:
    correct = [s for s in group if s.correct]
    rel = [0.0] * len(group)
    if correct:
        kappa = -config.rel_len_penalty if len(correct) >= config.rel_len_acc_req * len(group) else config.rel_len_reward
        lengths = [s.length for s in correct]
        mean, spread = sum(lengths) / len(lengths), max(lengths) - min(lengths)
        if spread > 0:
            rel = [kappa * (s.length - mean) / spread if s.correct else 0.0 for s in group]
    return [-config.format_weight * (not s.format_ok) + config.accuracy_weight * s.correct + r
            for s, r in zip(group, rel, strict=True)]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float) -> torch.Tensor:
    """(r - mean_g) / (std_g + eps), std unbiased, as TRL's scale_rewards=True (N,) -> (N,)."""
    grouped = rewards.view(-1, group_size)  # (P, G)
    advantages = (grouped - grouped.mean(-1, keepdim=True)) / (grouped.std(-1, keepdim=True) + eps)
    return advantages.reshape(-1)
