"""A relaxed prompt's embeddings, probs @ rows, read sparsely when every row holds few tokens.

ADC's rows hold at most a few tokens after its first step, so the dense (B*L, V) @ (V, D) product is almost all
multiplications by zero. The forward then gathers each row's nonzero entries instead, which saves 3-8 % of ADC's
loss pass on one CPU thread (docs/benchmarks.md §6). The backward stays dense: the gradient of every vocabulary
entry is what lets a new token into a row."""

from __future__ import annotations

import torch

SPARSE_MAX_WIDTH = 64  # the most nonzero entries a row may hold for the gathered forward (its gather is B*L*k*D)


class _SparseMixture(torch.autograd.Function):
    """probs (..., V) with at most `width` nonzero entries a row, rows (V, D) -> (..., D); d/d probs is dense."""

    @staticmethod
    def forward(ctx, probs: torch.Tensor, rows: torch.Tensor, width: int) -> torch.Tensor:
        index = probs.abs().topk(width, dim=-1).indices  # (..., k): every nonzero entry (any sign), then zeros
        values = probs.gather(-1, index)  # (..., k)
        ctx.save_for_backward(rows)
        ctx.probs_dtype = probs.dtype
        return (values.to(rows.dtype).unsqueeze(-2) @ rows[index]).squeeze(-2)  # (..., 1, k) @ (..., k, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (rows,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        # Flattened: the gradient arrives as a slice of the model input's, and a strided batch of it would make
        # the product a batched matmul against B copies of rows.T (several times slower on CPU).
        flat = grad.to(rows.dtype).reshape(-1, grad.shape[-1]) @ rows.T  # (N, V)
        return flat.reshape(*grad.shape[:-1], -1).to(ctx.probs_dtype), None, None  # (..., V)


def mix(probs: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """probs (..., V) @ rows (V, D) in rows' dtype, gathered when no row holds more than SPARSE_MAX_WIDTH tokens
    (rows must then be frozen: their gradient is not computed)."""
    width = int(torch.count_nonzero(probs.detach(), dim=-1).max()) if probs.numel() else 0
    if 0 < width <= SPARSE_MAX_WIDTH and not rows.requires_grad:
        return _SparseMixture.apply(probs, rows, width)
    return probs.to(rows.dtype) @ rows
