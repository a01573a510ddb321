"""A target curriculum for search methods: the loss sees a growing prefix of the target.

The mean loss over T target tokens dilutes the first wrong one, which alone decides the greedy output
(on the natural set most near misses are one to three wrong tokens, often the first), and a short target
is cheaper to score. So the objective's context shows the target's first k tokens; whenever a discrete
prompt gets all of them right under teacher forcing, it shows the full target's leading right tokens of
that prompt plus k more. The judge always judges the full target. Measured on held-out natural openings
it loses (GCG: 2 of 12 against 6; each new token costs steps of its own, docs/benchmarks.md §6), so every
preset leaves it off.

    start_curriculum(run, k)                                   # before the first loss
    if prefix_hit and curriculum_open(run):
        whole = extend_target(run, objective, prompts, extra=k, compute_dtype=dtype)  # (N,) full hits
"""

from __future__ import annotations

from dataclasses import replace

import torch

from softtoken.methods.harness import RunHarness
from softtoken.objectives import Objective


def start_curriculum(run: RunHarness, count: int) -> None:
    """Show the objective the target's first `count` tokens (0: the whole target). A universal problem has
    no single target to grow, so it is refused before any model work."""
    if count and run.problem.universal:
        raise ValueError("target_curriculum needs a single target, got a universal problem; set it to 0")
    if count:
        run.context = replace(run.context, target_ids=run.problem.target_ids[:count])


def curriculum_open(run: RunHarness) -> bool:
    """Whether the objective sees less than the whole target."""
    return len(run.context.target_ids) < len(run.problem.target_ids)


def extend_target(run: RunHarness, objective: Objective, prompts: torch.Tensor, *, extra: int,
                  compute_dtype: str) -> torch.Tensor:
    """Discrete prompts (N, L) that get the shown prefix right: show the full target's longest leading
    run of right tokens among them plus `extra` more (one teacher-forced pass of the N). Returns (N,) bool,
    True where a prompt gets the whole target right (a greedy match for the judge to confirm)."""
    full = replace(run.context, target_ids=run.problem.target_ids)
    with torch.no_grad(), run.lm.compute(compute_dtype):
        _, predictions = objective.hard_loss_and_predictions(run.lm, prompts, full)  # (N, T)
    right = (predictions == full.target_tensor(run.lm.device)).long().cumprod(-1).sum(-1)  # (N,)
    run.context = replace(full, target_ids=run.problem.target_ids[: int(right.max()) + extra])
    run.record({"search/target_extended_step": run.step})
    return right == len(run.problem.target_ids)
