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

import functools
import math
from collections.abc import Callable
from typing import Any

import torch

from softtoken.lm.softlm import SoftLM
from softtoken.methods.harness import RunHarness
from softtoken.objectives import Objective, ObjectiveContext, TargetCE

# chunk (n,) of candidate indices -> the embedded prompts the model reads (n, S, D) and the past they follow
Inputs = Callable[[torch.Tensor], tuple[torch.Tensor, Any]]


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
                     *, batch_size: int, prefix_cache: bool, compute_dtype: str, screen_tokens: int = 0,
                     screen_keep: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses (N,) and teacher-forced exact matches (N,) of candidates (N, L), in chunks of `batch_size`; with
    `prefix_cache` and the `current` prompt (L,) they share, from its cached keys and values; with
    `screen_tokens` t > 0, each chunk is scored on the target's first t tokens and only its `screen_keep` share
    with the lowest loss there on the rest (the others keep loss inf and no match). Both need a TargetCE
    objective; other objectives score every candidate whole. Once the time budget is spent, the chunks not yet
    scored keep loss inf: a budget is a promise about wall time, and one step of long targets can take far
    longer than the budget."""
    lm = run.lm
    losses = torch.full((candidates.shape[0],), float("inf"), device=lm.device)
    exact = torch.zeros(candidates.shape[0], dtype=torch.bool, device=lm.device)
    with lm.compute(compute_dtype):
        if isinstance(objective, TargetCE):
            order, inputs = prompt_inputs(lm, candidates, current if prefix_cache else None)
            own_target = torch.tensor(objective.target(run.context), device=lm.device)  # (T,)
            score = screened_scorer(lm, objective, own_target, screen_tokens, screen_keep, inputs)
        else:
            order = torch.arange(candidates.shape[0], device=lm.device)
            score = functools.partial(whole_scores, lm, objective, candidates, run.context,
                                      run.context.target_tensor(lm.device))
        for number, chunk in enumerate(order.split(batch_size)):
            if number and run.clock.expired():
                break
            losses[chunk], exact[chunk] = score(chunk)
    return losses, exact


def whole_scores(lm: SoftLM, objective: Objective, candidates: torch.Tensor, context: ObjectiveContext,
                 target: torch.Tensor, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses and exact matches of a chunk (n,) of candidates (N, L) under any objective, one pass each."""
    loss, predictions = objective.hard_loss_and_predictions(lm, candidates[chunk], context)
    return loss, (predictions == target).all(-1)


def prompt_inputs(lm: SoftLM, candidates: torch.Tensor, current: torch.Tensor | None) -> tuple[torch.Tensor, Inputs]:
    """The order to score candidates (N, L) in, and what a chunk (n,) of them feeds the model: the embedded
    prompts (n, S, D) and the past they follow (None: the frame's prefix). With the `current` prompt (L,), the
    candidates are sorted by their first changed position and a chunk runs only from its smallest first changed
    position p on, after the current prompt's cached keys and values. Chunks, not one pass per p: a pass of a few
    candidates wastes more on small matmuls and per-call overhead than the shorter prefix saves."""
    if current is None:
        return (torch.arange(candidates.shape[0], device=candidates.device),
                lambda chunk: (lm.embed_ids(lm.to_model_ids(candidates[chunk])), None))
    cache = lm.prefix_cache(lm.embed_ids(lm.to_model_ids(current))[None])
    changed = candidates != current  # (N, L)
    first = torch.where(changed.any(-1), changed.float().argmax(-1), current.numel() - 1)  # (N,)

    def inputs(chunk: torch.Tensor) -> tuple[torch.Tensor, Any]:
        position = int(first[chunk].min())
        suffix = lm.embed_ids(lm.to_model_ids(candidates[chunk, position:]))  # (n, L-p, D)
        return suffix, lm.prompt_prefix_past(cache, position, chunk.numel()) if position else None

    return first.argsort(stable=True), inputs


def screened_scorer(lm: SoftLM, objective: TargetCE, target: torch.Tensor, screen_tokens: int, screen_keep: float,
                    inputs: Inputs) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A scorer of a chunk (n,) of candidates: their losses and exact matches (n,) from one teacher-forced pass
    each, or with `screen_tokens` t > 0 a pass on the target's first t tokens for all, then the rest for the
    ceil(`screen_keep` * n) lowest-loss ones there (a one-swap candidate's loss on the first tokens ranks its
    whole loss well: bench/screens/target_screen.py)."""
    lm = objective.in_frame(lm)

    def score(chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embeds, past = inputs(chunk)
        if not screen_tokens:
            logits = lm.teacher_forced_logits(embeds, target, past)  # (n, T, V_out)
            return objective.reduce(logits, target), (logits.argmax(-1) == target).all(-1)
        head, cache = lm.teacher_forced_head(embeds, target[:screen_tokens], past)  # (n, t, V_out)
        kept = objective.reduce(head, target[:screen_tokens]).argsort()[:math.ceil(screen_keep * chunk.numel())]
        logits = torch.cat([head[kept], lm.teacher_forced_tail(cache, kept, target, screen_tokens)], 1)  # (k, T, V)
        losses = torch.full((chunk.numel(),), float("inf"), device=head.device)
        exact = torch.zeros(chunk.numel(), dtype=torch.bool, device=head.device)
        losses[kept], exact[kept] = objective.reduce(logits, target), (logits.argmax(-1) == target).all(-1)
        return losses, exact

    return score
