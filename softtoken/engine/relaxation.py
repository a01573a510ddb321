"""The engine's one relaxation: logits -> the probabilities every objective sees.

    P  = softmax((z + s g) / T)              (softtoken.relax.relax; g Gumbel noise, T fixed or learnt)
    H  = onehot(argmax P)                    constant, no gradient (or a categorical draw from P)
    ST = H forward, gradient of P            (softtoken.relax.straight_through)
    probs = (1 - hard) [(1 - soft) H + soft P] + hard ST

The forward value is (1 - hard)(1 - soft) H + (1 - hard) soft P + hard H and the gradient reaching P
is scaled by (1 - hard) soft + hard: soft = hard = 0 is a plain discrete prompt with no gradient
(proto-tools' convention, proto-gradient-optimizer.md §5 A). Fixed positions always feed H, so the
model sees exactly their token whatever the temperature, and they get no gradient. Forbidden
tokens (hard token masks of objectives) are removed before the softmax, so no blend can feed them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from softtoken.relax import hard_index, relax, straight_through


def blend(
    logits: torch.Tensor,
    *,
    temperature: float | torch.Tensor,
    soft: float,
    hard: float,
    fixed: torch.Tensor | None = None,
    forbidden: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    noise_scale: float = 1.0,
    hard_method: str = "argmax",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """logits (B, L, V), temperature float or (B, L, 1), fixed (L,) bool, forbidden (V,) bool,
    noise (B, L, V) or None -> probs (B, L, V) in float32.

    Forbidden entries get probability exactly 0 and are never the argmax. Fixed rows feed the
    argmax of their noise-free logits.
    """
    probs = relax(mask_forbidden(logits, forbidden), temperature, noise=noise, noise_scale=noise_scale)  # (B, L, V)
    # The categorical draw is the DLMI reference's ST token; it only matters when something is hard.
    method = hard_method if (hard > 0 or soft < 1) else "argmax"
    mixed = _mix(probs, soft=soft, hard=hard, method=method, generator=generator)
    if fixed is None or not bool(fixed.any()):
        return mixed
    anchored = F.one_hot(mask_forbidden(logits, forbidden).argmax(-1), probs.shape[-1]).to(probs.dtype)
    return torch.where(fixed[None, :, None], anchored, mixed)


def _mix(probs: torch.Tensor, *, soft: float, hard: float, method: str,
         generator: torch.Generator | None) -> torch.Tensor:
    """(1 - hard)[(1 - soft) H + soft P] + hard ST; the pure soft and pure ST cases skip the dense (B, L, V)
    one-hot arithmetic, which costs as much as the model's own passes at L = 80 (same values)."""
    if hard == 0 and soft == 1:
        return probs
    index = hard_index(probs, method, generator)  # (B, L)
    if hard == 1:
        return straight_through(probs, index)
    one_hot = F.one_hot(index, probs.shape[-1]).to(probs.dtype)  # (B, L, V)
    mixed = (1.0 - hard) * ((1.0 - soft) * one_hot + soft * probs)
    return mixed + hard * straight_through(probs, index) if hard > 0 else mixed


def mask_forbidden(logits: torch.Tensor, forbidden: torch.Tensor | None) -> torch.Tensor:
    """Logits (..., V) with forbidden (V,) entries at -inf; gradient 0 there."""
    if forbidden is None:
        return logits
    return logits.masked_fill(forbidden, float("-inf"))
