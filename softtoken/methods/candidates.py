"""Discrete candidate prompts around a current one: drawn from the one-hot gradient's top-k tokens or from relaxed
rows, or every swap to given tokens or placement of given token spans (optionally only those the gradient ranks
first), and scored (losses and teacher-forced exact matches, in chunks, optionally from the current prompt's keys
and values, never past the run's deadline). GCG's steps and copies and ADC's polish, chain and copy swaps search
with these.

    candidates = sample_candidates(current, grad, search_width=64, topk=32, n_replace=1, generator=generator)
    losses, exact = score_candidates(run, objective, candidates, current, batch_size=64, prefix_cache=True,
                                     compute_dtype="float32")
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from softtoken.methods.harness import RunHarness
from softtoken.objectives import Objective, TargetCE


def sample_candidates(current: torch.Tensor, grad: torch.Tensor, *, search_width: int, topk: int, n_replace: int,
                      generator: torch.Generator, distinct: bool = False) -> torch.Tensor:
    """Candidates (N, L) around `current` (L,) prompt-vocabulary indices, from the one-hot gradient (L, V).

    Each changes `n_replace` distinct uniformly chosen positions to tokens drawn uniformly from that
    position's top-k of -grad (nanoGCG's `sample_ids_from_grad`). `distinct` (one swap each) draws the
    (position, token) pairs without replacement, so no forward pass is spent on a duplicate.
    """
    length, vocab = grad.shape
    top = (-grad).topk(min(topk, vocab), dim=-1).indices  # (L, K)
    if distinct:
        flat = torch.randperm(top.numel(), generator=generator, device=grad.device)[:search_width]  # (N,)
        positions, picks = flat // top.shape[1], flat % top.shape[1]
        candidates = current.expand(positions.numel(), -1).clone()  # (N, L)
        return candidates.scatter_(1, positions[:, None], top[positions, picks][:, None])
    scores = torch.rand((search_width, length), generator=generator, device=grad.device)
    positions = scores.argsort(dim=-1)[:, :n_replace]  # (N, n_replace), distinct per row
    picks = torch.randint(0, top.shape[1], (search_width, n_replace), generator=generator, device=grad.device)
    candidates = current.expand(search_width, -1).clone()  # (N, L)
    return candidates.scatter_(1, positions, top[positions, picks])


def sample_row_swaps(current: torch.Tensor, rows: torch.Tensor, count: int,
                     generator: torch.Generator) -> torch.Tensor:
    """`count` single swaps (count, L) of `current` (L,), drawn from relaxed rows (L, V) (each a distribution over
    the prompt vocabulary): a position uniformly among those whose row holds mass off the current token, then a
    token from that row without the current one; draws may repeat. (0, L) when every row is one-hot at `current`."""
    weights = rows.clamp_min(0).scatter(1, current[:, None], 0.0)  # (L, V)
    open_rows = (weights.sum(-1) > 0).nonzero().flatten()  # (P,)
    if open_rows.numel() == 0 or count == 0:
        return current.new_empty((0, current.numel()))
    positions = open_rows[torch.randint(0, open_rows.numel(), (count,), generator=generator, device=rows.device)]
    tokens = torch.multinomial(weights[positions], 1, generator=generator).flatten()  # (N,)
    candidates = current.expand(count, -1).clone()  # (N, L)
    return candidates.scatter_(1, positions[:, None], tokens[:, None])


def token_swaps(current: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Every single swap (N, L) of `current` (L,) to one of `tokens` (K,) (prompt-vocabulary indices), position by
    position in the order of `tokens`, less the swaps that change nothing (N <= L * K): spans of one token."""
    return span_placements(current, tokens[:, None])


def span_placements(current: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Every placement (N, L) of each span (S, k) of prompt-vocabulary indices over k consecutive positions of
    `current` (L,), start by start in the order of `spans`, less those that change nothing (N <= (L - k + 1) * S)."""
    (length,), (count, width) = current.shape, spans.shape
    starts = max(length - width + 1, 0)
    offsets = torch.arange(starts, device=current.device).repeat_interleave(count)[:, None]  # (N, 1)
    positions = offsets + torch.arange(width, device=current.device)  # (N, k)
    candidates = current.repeat(starts * count, 1).scatter_(1, positions, spans.repeat(starts, 1))  # (N, L)
    return candidates[(candidates != current).any(-1)]


def lowest_estimate_swaps(current: torch.Tensor, swaps: torch.Tensor, grad: torch.Tensor, width: int) -> torch.Tensor:
    """Of swaps (N, L) of `current` (L,) (at one position or several), the `width` whose first-order loss change
    under the one-hot gradient (L, V), the sum over positions of grad[p, new] - grad[p, old], is lowest, in their
    given order (a GCG ranking of a fixed set of swaps, so that only the likeliest are scored); all N, unchanged,
    when N <= width."""
    if swaps.shape[0] <= width:
        return swaps
    positions = torch.arange(current.numel(), device=current.device)  # (L,)
    estimate = (grad[positions, swaps] - grad[positions, current]).sum(-1)  # (N,)
    return swaps[estimate.topk(width, largest=False).indices.sort().values]


@torch.no_grad()
def score_candidates(run: RunHarness, objective: Objective, candidates: torch.Tensor, current: torch.Tensor | None,
                     *, batch_size: int, prefix_cache: bool, compute_dtype: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses (N,) and teacher-forced exact matches (N,) of candidates (N, L), in chunks of `batch_size`; with
    `prefix_cache` and the `current` prompt (L,) they share, from its cached keys and values. Once the time
    budget is spent, the chunks not yet scored keep loss inf: a budget is a promise about wall time, and one
    step of long targets can take far longer than the budget."""
    lm = run.lm
    target = run.context.target_tensor(lm.device)  # (T,)
    losses = torch.full((candidates.shape[0],), float("inf"), device=lm.device)
    exact = torch.zeros(candidates.shape[0], dtype=torch.bool, device=lm.device)
    with lm.compute(compute_dtype):
        if prefix_cache and current is not None and isinstance(objective, TargetCE):
            order, score = prefix_scorer(run, objective, candidates, current, target)
        else:
            order, score = torch.arange(candidates.shape[0], device=lm.device), None
        for number, chunk in enumerate(order.split(batch_size)):
            if number and run.clock.expired():
                break
            if score is None:
                loss, predictions = objective.hard_loss_and_predictions(lm, candidates[chunk], run.context)
                losses[chunk], exact[chunk] = loss, (predictions == target).all(-1)
            else:
                losses[chunk], exact[chunk] = score(chunk)
    return losses, exact


def prefix_scorer(run: RunHarness, objective: TargetCE, candidates: torch.Tensor, current: torch.Tensor,
                  target: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], tuple]]:
    """Candidates sorted by their first changed position, and a scorer of a chunk of them that runs only
    from the chunk's smallest first changed position p on. Chunks, not one pass per p: a pass of a few
    candidates wastes more on small matmuls and per-call overhead than the shorter prefix saves."""
    lm = run.lm
    cache = lm.prefix_cache(lm.embed_ids(lm.to_model_ids(current))[None])
    changed = candidates != current  # (N, L)
    first = torch.where(changed.any(-1), changed.float().argmax(-1), current.numel() - 1)  # (N,)

    def score(chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        position = int(first[chunk].min())
        suffix = lm.embed_ids(lm.to_model_ids(candidates[chunk, position:]))  # (n, L-p, D)
        if position == 0:
            logits = lm.teacher_forced_logits(suffix, target)
        else:
            logits = lm.teacher_forced_logits_after(cache, position, suffix, target)  # (n, T, V_out)
        return objective.reduce(logits, target), (logits.argmax(-1) == target).all(-1)

    return first.argsort(stable=True), score
