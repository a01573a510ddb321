"""Initial prompt logits: the one place a method draws its starting Z."""

from __future__ import annotations

import torch


def initial_logits(shape: tuple[int, ...], *, std: float, generator: torch.Generator | None,
                   device: torch.device | str) -> torch.Tensor:
    """N(0, std^2) float32 logits of `shape`; std 0 gives zeros and draws nothing from the generator."""
    if std == 0:
        return torch.zeros(shape, device=device)
    return std * torch.randn(shape, generator=generator, device=device)


def simplex_start(shape: tuple[int, ...], *, std: float, generator: torch.Generator | None,
                  device: torch.device | str) -> torch.Tensor:
    """Rows on the probability simplex to start from: softmax over the last dimension of initial_logits.

    A random start, not the uniform one (std 0): from the uniform point every prompt of a batch gets the same
    gradient, so parallel prompts would stay identical."""
    return torch.softmax(initial_logits(shape, std=std, generator=generator, device=device), dim=-1)
