"""Starts built from the target's own tokens, shared by the discrete search (GCG) and the relaxations (ADC).

On natural targets the target's words put the model on its topic: tiled to the prompt length, the
target's best rotation starts at about half the loss of " x" x L (docs/benchmarks.md, "target start").
"""

from __future__ import annotations

import torch

from softtoken.lm.softlm import SoftLM


def target_rotations(lm: SoftLM, target_ids: tuple[int, ...], length: int, owner: str) -> torch.Tensor:
    """Every rotation of the target's tokens tiled to `length`, as prompt-vocabulary indices (R, L); rotation r
    ends the prompt on a different target token. Tokens outside the prompt vocabulary are skipped; a target
    with none inside is a one-line error naming `owner`, the setting that asked for this start."""
    usable = prompt_indices(lm, target_ids).tolist()
    if not usable:
        raise ValueError(f"{owner}: no target token is in the prompt vocabulary; start from random or text instead")
    return torch.tensor([[usable[(shift + i) % len(usable)] for i in range(length)]
                         for shift in range(len(usable))], device=lm.device)  # (R, L)


def prompt_indices(lm: SoftLM, ids: tuple[int, ...]) -> torch.Tensor:
    """Model token ids as prompt-vocabulary indices (K,), in order; ids outside the prompt vocabulary are dropped."""
    index, inside = lm.to_prompt_index(torch.tensor(ids, dtype=torch.long, device=lm.device))
    return index[inside]


def target_spans(lm: SoftLM, target_ids: tuple[int, ...], width: int) -> torch.Tensor:
    """Every distinct run of `width` consecutive target tokens, as prompt-vocabulary indices (S, width), in order
    of first appearance; runs with a token outside the prompt vocabulary are left out ((0, width) if none is)."""
    index, inside = lm.to_prompt_index(torch.tensor(target_ids, dtype=torch.long, device=lm.device))
    spans: dict[tuple[int, ...], None] = {}
    for start in range(len(target_ids) - width + 1):
        if bool(inside[start:start + width].all()):
            spans.setdefault(tuple(index[start:start + width].tolist()), None)
    return torch.tensor(list(spans), dtype=torch.long, device=lm.device).reshape(len(spans), width)
