"""Gumbel noise for Gumbel-softmax relaxations."""

from __future__ import annotations

from typing import Literal

import torch

GumbelKind = Literal["standard", "truncated"]
GUMBEL_KINDS: tuple[str, ...] = ("standard", "truncated")

# The DLMI reference draws u in [eps, 0.999), capping g at about 6.91 (dlmi-reference.md §2.2).
TRUNCATED_UPPER = 0.999


def gumbel_noise(
    shape: tuple[int, ...],
    *,
    generator: torch.Generator | None = None,
    kind: GumbelKind = "standard",
    eps: float = 1e-10,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Draw g = -log(-log u) in float32; `truncated` maps u into [eps, 0.999) as the reference does."""
    if kind not in GUMBEL_KINDS:
        raise ValueError(f"gumbel kind must be one of {GUMBEL_KINDS}, got {kind!r}")
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    # In place: at (8, 80, 49152) every fresh tensor costs more in page faults than its arithmetic.
    if kind == "truncated":
        u.mul_(TRUNCATED_UPPER - eps).add_(eps)
    else:
        u.clamp_(min=eps, max=1.0 - 1e-7)
    return u.log_().neg_().log_().neg_()
