"""One relaxation for every method: logits -> probabilities fed to the soft embedding.

soft (Gumbel-softmax):      p = softmax((z + s g) / tau)
straight-through (hard):    forward onehot(k), gradient of p; k = argmax p (textbook ST-GS) or
                            k ~ Categorical(p) (the DLMI reference's variant, dlmi-reference.md §2.2).
"""

from __future__ import annotations

from typing import Literal

import torch

HardMethod = Literal["argmax", "categorical"]
HARD_METHODS: tuple[str, ...] = ("argmax", "categorical")


def straight_through(probs: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """One-hot of `index` in the forward pass, gradient of `probs` in the backward pass."""
    hard = torch.zeros_like(probs).scatter_(-1, index.unsqueeze(-1), 1.0)
    return hard + (probs - probs.detach())  # the bracket is exactly 0, so the forward is exactly one-hot


def hard_index(
    probs: torch.Tensor, method: HardMethod = "argmax", generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick one token per row of probs (..., V) -> (...)."""
    if method == "argmax":
        return probs.detach().argmax(-1)
    if method == "categorical":
        flat = probs.detach().reshape(-1, probs.shape[-1])  # (N, V)
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
    raise ValueError(f"hard method must be one of {HARD_METHODS}, got {method!r}")


def relax(
    logits: torch.Tensor,
    tau: torch.Tensor | float,
    *,
    noise: torch.Tensor | None = None,
    noise_scale: float = 1.0,
    hard: bool = False,
    hard_method: HardMethod = "argmax",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, L, V), tau broadcastable to (B, L, 1), noise (B, L, V) or None -> probs (B, L, V).

    Computed in float32 whatever the logits' dtype, as the reference does.
    """
    scores = logits.float()
    if noise is not None:
        scores = scores + noise_scale * noise
    tau_t = torch.as_tensor(tau, dtype=torch.float32, device=scores.device)
    probs = torch.softmax(scores / tau_t, dim=-1)
    if not hard:
        return probs
    return straight_through(probs, hard_index(probs, hard_method, generator))
