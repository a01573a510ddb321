"""Does an ADC prompt's early loss predict which prompt ends best? (issue 12, docs/benchmarks.md §6: pruning)

Runs `adc-polish` with eight prompts (lr 20, so each prompt's step is the preset's) and no pruning for --steps
steps on each named target of a stored target set, one thread, and records every prompt's loss at every step.
The winner is the prompt that hits, or else the one with the lowest loss over the last 20 steps. For each
checkpoint step it prints the winner's rank (1 = lowest loss) at that step, by that step's loss and by the mean
of the last 10 steps: a halving at that step keeps the winner when its rank is at most 4, and a second
halving when at most 2.

Usage: python bench/screens/prune_ranks.py bench/results/screen-budget-720/targets.json natural_06 natural_11
       [--steps 160] [--seed 0] [--threads 1]
"""

from __future__ import annotations

from dataclasses import replace

import torch
from stored_targets import targets_args  # bench/screens/stored_targets.py, next to this script

from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import ADC, adc_polish
from softtoken.methods.base import Budget, Problem
from softtoken.objectives import TargetCE

CHECKPOINTS = (10, 20, 40, 60, 80, 100)
BATCH = 8
WINDOW = 10  # steps of the mean-loss ranking


def recorded_losses(problem: Problem, steps: int) -> tuple[torch.Tensor, int | None]:
    """Every prompt's loss at every step (S, 8), and the step of a hit (None: no hit)."""
    rows, score = [], TargetCE.loss_and_predictions

    def recording(objective, lm, probs, context):  # the relaxed loss pass, once per step
        losses, predictions = score(objective, lm, probs, context)
        rows.append(losses.detach().clone())
        return losses, predictions

    TargetCE.loss_and_predictions = recording
    try:
        config = replace(adc_polish(), batch_size=BATCH, learning_rate=20.0)
        result = ADC(config).run(problem, Budget(steps=steps))
    finally:
        TargetCE.loss_and_predictions = score
    return torch.stack(rows), (result.success_step if result.exact_match else None)


def main() -> None:
    args, samples = targets_args(__doc__, steps=160)
    lm = as_softlm(None)
    for name, target in samples.items():
        problem = Problem(lm=lm, target_ids=target.ids, prompt_length=10, seed=args.seed)
        losses, hit = recorded_losses(problem, args.steps)  # (S, 8)
        winner = int(losses[-1].argmin()) if hit else int(losses[-20:].mean(0).argmin())
        checkpoints = [k for k in CHECKPOINTS if k <= len(losses)]
        ranks = [rank_of(winner, losses[k - 1]) for k in checkpoints]
        window_ranks = [rank_of(winner, losses[k - WINDOW: k].mean(0)) for k in checkpoints]
        end = "hit at step %d" % hit if hit else "no hit; last-20 mean %.2f" % losses[-20:, winner].mean()
        print(f"{name} seed {args.seed}: winner prompt {winner}, {end}; its rank by the step's loss (by the mean "
              f"of the last {WINDOW} steps) at steps "
              + ", ".join(f"{k}: {rank} ({window})" for k, rank, window in zip(checkpoints, ranks, window_ranks)),
              flush=True)


def rank_of(prompt: int, losses: torch.Tensor) -> int:
    """1 for the lowest of losses (B,)."""
    return int((losses < losses[prompt]).sum()) + 1


if __name__ == "__main__":
    main()
