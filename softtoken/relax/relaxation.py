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
    tau_t = torch.as_tensor(tau, dtype=torch.float32, device=logits.device)
    probs = TemperedSoftmax.apply(logits.float(), tau_t, noise, noise_scale)
    if not hard:
        return probs
    return straight_through(probs, hard_index(probs, hard_method, generator))


class TemperedSoftmax(torch.autograd.Function):
    """softmax((z + s g) / tau) and its gradients w.r.t. z and tau, in few passes over the dense (B, L, V).

    Autograd's chain of add, mul, div and softmax allocates and walks the (B, L, V) tensor about ten times
    per step, which costs more than the model itself at L = 80 on a CPU; here the forward makes two
    tensors (scores, probs) and the backward one, with the row sums as batched dot products.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, tau: torch.Tensor, noise: torch.Tensor | None,
                noise_scale: float) -> torch.Tensor:
        scores = logits.add(noise, alpha=noise_scale) if noise is not None else logits.clone()
        probs = torch.softmax(scores.div_(tau), dim=-1)
        if tau.requires_grad:  # forbidden tokens score -inf; with probability 0 they add 0 to d tau, not nan
            scores.nan_to_num_(neginf=0.0)
        ctx.save_for_backward(probs, scores, tau)
        return probs

    @staticmethod
    def backward(ctx, grad_probs: torch.Tensor):
        probs, scores, tau = ctx.saved_tensors
        inner = torch.einsum("...v,...v->...", probs, grad_probs).unsqueeze(-1)
        grad_scores = (grad_probs - inner).mul_(probs)  # softmax's Jacobian-vector product
        grad_tau = None
        if ctx.needs_input_grad[1]:
            grad_tau = torch.einsum("...v,...v->...", grad_scores, scores).unsqueeze(-1).div(tau).neg_()
            grad_tau = grad_tau.sum_to_size(tau.shape)
        grad_logits = grad_scores.div_(tau) if ctx.needs_input_grad[0] else None
        return grad_logits, grad_tau, None, None
