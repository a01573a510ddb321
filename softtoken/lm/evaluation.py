"""The one evaluator every method is judged by: discrete prompt -> greedy decode -> token scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from softtoken.lm.frame import Frame
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


def combine_scores(scores: Sequence[PromptScore]) -> PromptScore:
    """One prompt's scores on several targets as one: exact when all are, mean LCS and accuracy, outputs
    concatenated in target order (a single score is returned as it is)."""
    if len(scores) == 1:
        return scores[0]
    return PromptScore(
        prompt_ids=scores[0].prompt_ids, output_ids=tuple(i for s in scores for i in s.output_ids),
        exact_match=all(s.exact_match for s in scores),
        lcs_ratio=sum(s.lcs_ratio for s in scores) / len(scores),
        token_accuracy=sum(s.token_accuracy for s in scores) / len(scores),
    )


def evaluate_prompts(lm: SoftLM, prompt_ids: torch.Tensor, target: Sequence[int]) -> list[PromptScore]:
    """Greedy-decode len(target) tokens from each discrete prompt (N, L) and score them."""
    outputs = lm.greedy_generate(prompt_ids, len(target))  # (N, T)
    return score_outputs(prompt_ids, outputs, target)


def roundtrip_exact(lm: SoftLM, prompt_ids: Sequence[int], target: Sequence[int]) -> bool:
    """Exact match after decoding the prompt to text, rendering the whole context (the frame's text or chat
    template) around it and re-encoding: what a user pasting the text gets."""
    rendered = lm.frame.render(lm, lm.decode(prompt_ids))
    if not rendered:
        return False
    output = lm.framed(Frame()).greedy_generate(torch.tensor([rendered]), len(target))[0].tolist()
    return exact_match(output, target)


def survives_reencoding(lm: SoftLM, prompt_ids: Sequence[int]) -> bool:
    """Whether the rendered text of the prompt in its frame re-encodes to exactly the ids the search feeds
    (a prompt whose tokens merge with the template's neighbours does not)."""
    return lm.frame.render(lm, lm.decode(prompt_ids)) == lm.frame.around(list(prompt_ids))
