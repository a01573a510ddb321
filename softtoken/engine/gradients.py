"""Combining per-objective gradients: norm alignment, mergers, normalisation.

All functions work on K objectives x B independent trajectories at once: an objective's gradient
has shape (B, L, V) and a stack of them (K, B, L, V). Norms are Frobenius norms over (L, V), taken
per trajectory, so trajectories never influence each other.

    grads = align_norms(grads, "match_first")              # (K, B, L, V)
    merged = MERGERS["pcgrad"]().merge(grads * weights)    # (B, L, V)
    update = normalize_gradient(merged, "sqrt_length")     # (B, L, V)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

NORM_ALIGNMENTS: tuple[str, ...] = ("none", "unit", "match_first")
NORMALIZATIONS: tuple[str, ...] = ("none", "unit", "sqrt_length")
NORM_EPS = 1e-7  # keeps divisions by a vanishing norm finite
ROW_ACTIVE_EPS = 1e-7  # a row whose squared norm exceeds this counts as an active position

MGDA_MAX_ITERATIONS = 250
MGDA_TOLERANCE = 1e-8


def trajectory_norms(grads: torch.Tensor) -> torch.Tensor:
    """Frobenius norm over the last two axes: (..., L, V) -> (...)."""
    return grads.flatten(-2).norm(dim=-1)


def align_norms(grads: torch.Tensor, mode: str, zero_norm_eps: float = 0.0) -> torch.Tensor:
    """Rescale each objective's gradient (K, B, L, V) before weighting, so weights keep their ratios.

    unit: every gradient to norm 1. match_first: every gradient to the norm of objective 0; with a
    reference norm below `zero_norm_eps` the trajectory is left unchanged, and other gradients below it
    are zeroed (a dead objective should not be blown up to the reference size).
    """
    if mode not in NORM_ALIGNMENTS:
        raise ValueError(f"norm alignment must be one of {NORM_ALIGNMENTS}, got {mode!r}")
    if mode == "none" or grads.shape[0] == 1:
        return grads
    norms = trajectory_norms(grads)[..., None, None]  # (K, B, 1, 1)
    if mode == "unit":
        return grads / (norms + NORM_EPS)
    reference = norms[:1]  # (1, B, 1, 1)
    scaled = torch.where(norms < zero_norm_eps, torch.zeros_like(grads), grads * reference / (norms + NORM_EPS))
    aligned = torch.cat([grads[:1], scaled[1:]], dim=0)  # (K, B, L, V)
    return torch.where(reference < zero_norm_eps, grads, aligned)


class GradientMerger:
    """Merges already weighted gradients (K, B, L, V) into one update direction (B, L, V)."""

    def merge(self, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


MERGERS: dict[str, type[GradientMerger]] = {}


def register_merger(name: str) -> Callable[[type[GradientMerger]], type[GradientMerger]]:
    """Class decorator adding a GradientMerger to MERGERS under `name`."""

    def add(cls: type[GradientMerger]) -> type[GradientMerger]:
        if name in MERGERS:
            raise ValueError(f"merger {name!r} is already registered")
        MERGERS[name] = cls
        return cls

    return add


def get_merger(name: str) -> GradientMerger:
    if name not in MERGERS:
        raise ValueError(f"unknown merger {name!r}; available: {sorted(MERGERS)}")
    return MERGERS[name]()


@register_merger("weighted_sum")
class WeightedSum(GradientMerger):
    """Plain sum; the weights were applied before merging."""

    def merge(self, grads: torch.Tensor) -> torch.Tensor:
        return grads.sum(dim=0)


@register_merger("pcgrad")
class PCGrad(GradientMerger):
    """PCGrad (Yu et al. 2020, arXiv 2001.06782) with a fixed order instead of a random shuffle.

    Each g_i drops its component along every g_j it conflicts with (negative dot product). Projections
    are against the original g_j, not the partly projected ones, so the result does not depend on
    which conflicts were resolved first beyond the fixed j order.
    """

    def merge(self, grads: torch.Tensor) -> torch.Tensor:
        flat = grads.flatten(2)  # (K, B, N)
        squared = (flat * flat).sum(-1)  # (K, B)
        merged = torch.zeros_like(flat[0])  # (B, N)
        for i in range(flat.shape[0]):
            projected = flat[i].clone()  # (B, N)
            for j in range(flat.shape[0]):
                if j == i:
                    continue
                dot = (projected * flat[j]).sum(-1)  # (B,)
                conflict = (dot < 0) & (squared[j] > 0)
                coefficient = torch.where(conflict, dot / squared[j].clamp_min(1e-30), torch.zeros_like(dot))
                projected = projected - coefficient[:, None] * flat[j]
            merged = merged + projected
        return merged.reshape(grads.shape[1:])  # (B, L, V)


@register_merger("mgda")
class MGDA(GradientMerger):
    """MGDA (Sener & Koltun 2018, arXiv 1810.04650): the min-norm point of the gradients' convex hull.

    Solves min_a |sum_k a_k g_k|^2 over the simplex per trajectory by Frank-Wolfe with exact line
    search on the Gram matrix. A single gradient passes unchanged; the result is not rescaled.
    """

    def merge(self, grads: torch.Tensor) -> torch.Tensor:
        if grads.shape[0] == 1:
            return grads[0]
        flat = grads.flatten(2).transpose(0, 1).double()  # (B, K, N)
        alphas = min_norm_weights(flat @ flat.transpose(1, 2))  # (B, K)
        return torch.einsum("bk,kb...->b...", alphas.to(grads.dtype), grads)  # (B, L, V)


def min_norm_weights(gram: torch.Tensor) -> torch.Tensor:
    """Frank-Wolfe on min_a a^T G a over the simplex, batched: gram (B, K, K) -> weights (B, K)."""
    batch, count = gram.shape[:2]
    alphas = torch.full((batch, count), 1.0 / count, dtype=gram.dtype, device=gram.device)
    active = torch.ones(batch, dtype=torch.bool, device=gram.device)
    for _ in range(MGDA_MAX_ITERATIONS):
        grad_a = (gram @ alphas.unsqueeze(-1)).squeeze(-1)  # (B, K), half the gradient of a^T G a
        vertex = torch.nn.functional.one_hot(grad_a.argmin(-1), count).to(gram.dtype)  # (B, K)
        direction = vertex - alphas  # (B, K)
        curvature = torch.einsum("bk,bkl,bl->b", direction, gram, direction)  # (B,)
        slope = (direction * grad_a).sum(-1)  # (B,)
        active = active & (curvature > MGDA_TOLERANCE)
        # Exact line search on the quadratic along the direction, clipped to the segment.
        gamma = torch.where(active, (-slope / curvature.clamp_min(MGDA_TOLERANCE)).clamp(0.0, 1.0), 0.0)
        step = gamma[:, None] * direction  # (B, K)
        alphas = alphas + step
        active = active & (step.abs().sum(-1) > MGDA_TOLERANCE)
        if not active.any():
            break
    return alphas


def normalize_gradient(grad: torch.Tensor, mode: str) -> torch.Tensor:
    """Rescale the merged gradient (B, L, V) per trajectory; gradients with norm <= 1e-7 pass unchanged.

    unit: norm 1. sqrt_length: norm sqrt(L_eff), L_eff the rows with squared norm > 1e-7, so an update
    moves each active position by about the same amount whatever the prompt length.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {mode!r}")
    if mode == "none":
        return grad
    norms = trajectory_norms(grad)[:, None, None]  # (B, 1, 1)
    if mode == "unit":
        scaled = grad / norms.clamp_min(NORM_EPS)
    else:
        active_rows = ((grad * grad).sum(-1) > ROW_ACTIVE_EPS).sum(-1)  # (B,)
        scaled = grad * active_rows.to(grad.dtype).sqrt()[:, None, None] / (norms + NORM_EPS)
    return torch.where(norms > NORM_EPS, scaled, grad)
