"""Projections onto the probability simplex and onto its low-entropy part (PGD's two projections, after Geisler
et al. 2024, "Attacking Large Language Models with Projected Gradient Descent").

Both act on the last dimension of rows (..., V) and are batched over the rest."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def project_simplex(x: torch.Tensor, *, largest: int = 1024) -> torch.Tensor:
    """The Euclidean projection of every row of x (..., V) onto the probability simplex (Duchi et al. 2008):
    max(x - theta, 0) with the one threshold theta per row that makes the row sum to 1.

    theta comes from the row's `largest` largest entries when its support fits in them (the usual case after
    the first steps: a topk instead of a sort of all V entries), else from the whole sorted row."""
    if largest < x.shape[-1]:
        ordered = x.topk(largest, dim=-1).values  # (..., k), descending
        theta, support = _threshold(ordered)
        if bool((support < largest).all()):  # every row's support ends inside its top k: theta is exact
            return (x - theta).clamp_min(0)
    theta, _ = _threshold(x.sort(dim=-1, descending=True).values)
    return (x - theta).clamp_min(0)


def _threshold(ordered: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Duchi's threshold theta (..., 1) and support size (..., 1) from rows' largest entries, descending (..., k)."""
    excess = ordered.cumsum(-1) - 1  # (..., k)
    ranks = torch.arange(1, ordered.shape[-1] + 1, device=ordered.device, dtype=ordered.dtype)  # (k,)
    # The support is the largest k whose k-th largest entry stays positive after the shift excess_k / k.
    support = (ordered - excess / ranks > 0).sum(-1, keepdim=True)  # (..., 1), >= 1
    return excess.gather(-1, support - 1) / support.to(ordered.dtype), support


def tsallis_entropy(x: torch.Tensor) -> torch.Tensor:
    """The Tsallis entropy of order 2 (the Gini impurity) of rows x (..., V) on the simplex: 1 - sum x^2, (...,).
    0 for a one-hot row, 1 - 1/V for the uniform one."""
    return 1 - x.square().sum(-1)


def project_entropy(x: torch.Tensor, bound: float) -> torch.Tensor:
    """Rows of x (..., V) on the simplex with Tsallis-2 entropy above `bound` moved to at most it; others kept.

    On the face of the simplex that a row's d nonzero entries span, entropy 1 - |x|^2 = 1 - 1/d - |x - c|^2 with c
    uniform on that face: the rows of entropy <= bound lie outside the ball |x - c| < R, R^2 = 1 - bound - 1/d.
    A row inside is pushed radially out from c to the sphere and projected back onto the simplex (Geisler et
    al.'s step). When that projection drops entries, the row lands on a smaller face, possibly back inside
    its ball, so the push repeats there; every repeat shrinks the support, so it ends with every row outside
    its ball. A row at c itself (to rounding) has no direction of its own and is pushed toward one of its
    largest entries. All of it runs on each row's top entries, the largest face's size, not on all V."""
    kept = int((x > 0).sum(-1).max())  # the faces' largest size: every push stays inside the top `kept`
    values, index = x.topk(kept, dim=-1)  # (..., k)
    for _ in range(kept):  # each repeat drops an entry from every row it moves, so this is never reached
        inside, pushed = _entropy_push(values, bound)  # (..., 1), (..., k)
        if not inside.any():
            return torch.zeros_like(x).scatter_(-1, index, values)
        values = torch.where(inside, project_simplex(pushed), values)
    raise AssertionError("project_entropy did not converge")


def _entropy_push(x: torch.Tensor, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows of x (..., V) lie strictly inside their face's entropy ball (..., 1), and every row pushed
    from its face's centre out to the sphere (..., V)."""
    support = x > 0  # (..., V)
    count = support.sum(-1, keepdim=True).to(x.dtype)  # (..., 1)
    centre = support.to(x.dtype) / count  # (..., V)
    radius = (1 - bound - 1 / count).clamp_min(0).sqrt()  # (..., 1)
    offset = x - centre  # (..., V), 0 off the support
    # An offset within rounding of 0 has no direction: take the one toward the largest entry.
    centred = offset.norm(dim=-1, keepdim=True) <= radius * torch.finfo(x.dtype).eps ** 0.5  # (..., 1)
    toward_top = F.one_hot(x.argmax(-1), x.shape[-1]).to(x.dtype) - centre  # (..., V)
    offset = torch.where(centred, toward_top, offset)
    distance = offset.norm(dim=-1, keepdim=True)  # (..., 1)
    # A relative margin, so that a row pushed onto the sphere is not found inside it again by rounding.
    inside = (distance < radius * (1 - 1e-5)) | (centred & (radius > 0))  # (..., 1)
    pushed = centre + offset * (radius / distance.clamp_min(torch.finfo(x.dtype).tiny))  # (..., V)
    # Off the face at -1, not 0: the push sums to 1 only to rounding, and a row summing just below 1 would let
    # the simplex projection raise every zero entry into the support.
    return inside, torch.where(support, pushed, -1.0)
