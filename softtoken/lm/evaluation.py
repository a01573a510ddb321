"""The one evaluator every method is judged by: discrete prompt -> greedy decode -> token scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from softtoken.lm.softlm import SoftLM
from softtoken.metrics import exact_match, lcs_ratio, token_accuracy


@dataclass(frozen=True)
class PromptScore:
    """How well one discrete prompt reproduces the target under greedy decoding."""

    prompt_ids: tuple[int, ...]
    output_ids: tuple[int, ...]
    exact_match: bool
    lcs_ratio: float
    token_accuracy: float

    def key(self) -> tuple[bool, float, float]:
        """Ordering used to pick the best prompt: exact, then LCS, then positional accuracy."""
        return (self.exact_match, self.lcs_ratio, self.token_accuracy)

    def to_dict(self) -> dict:
        return asdict(self)


def score_outputs(prompts: torch.Tensor, outputs: torch.Tensor, target: Sequence[int]) -> list[PromptScore]:
    """Score already generated outputs (N, T) of prompts (N, L) against the target ids."""
    scores = []
    for prompt, output in zip(prompts.tolist(), outputs.tolist()):
        scores.append(
            PromptScore(
                prompt_ids=tuple(prompt),
                output_ids=tuple(output),
                exact_match=exact_match(output, target),
                lcs_ratio=lcs_ratio(output, target),
                token_accuracy=token_accuracy(output, target),
            )
        )
    return scores


def evaluate_prompts(lm: SoftLM, prompt_ids: torch.Tensor, target: Sequence[int]) -> list[PromptScore]:
    """Greedy-decode len(target) tokens from each discrete prompt (N, L) and score them."""
    outputs = lm.greedy_generate(prompt_ids, len(target))  # (N, T)
    return score_outputs(prompt_ids, outputs, target)


def roundtrip_exact(lm: SoftLM, prompt_ids: Sequence[int], target: Sequence[int]) -> bool:
    """Exact match after decoding the prompt to text and re-encoding it: what a user pasting the text gets."""
    reencoded = lm.encode(lm.decode(prompt_ids))
    if not reencoded:
        return False
    output = lm.greedy_generate(torch.tensor([reencoded]), len(target))[0].tolist()
    return exact_match(output, target)
