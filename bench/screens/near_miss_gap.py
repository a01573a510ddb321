"""How far the discrete prompts are from ADC's relaxed near misses (docs/benchmarks.md §6, "The gap at a near miss").

Runs `adc-copy` from a paired screen's start (seed, target) for a fixed number of steps and, at every step, counts
the wrong target tokens of each relaxed prompt's argmax (one discrete forward, outside the method's path: the run is
the same step for step). At each step where a relaxed prompt (not one-hot) has at most 2 wrong tokens under its
mixture (every fifth step, the one of them with the lowest loss), it also scores the discrete prompts nearest that
mixture: the best of 32 draws from its rows (token ~ X), greedy coordinate descent over its support (each row's
other kept tokens, one swap at a time, at most three swaps), and the tokens whose embeddings are nearest the
mixture's (L2). Prints one line per near miss and a
summary per target: how often the argmax had at most 1 wrong token, and the median wrong count of each rounding.

Usage: python bench/screens/near_miss_gap.py SEED STEPS TARGET [TARGET ...]   (embedded model, one thread)
"""

import statistics
import sys
from collections import Counter

import torch

from copy_swaps import wrong_and_loss
from softtoken.data.targets import load_targets
from softtoken.experiments.spec import run_key, run_seed
from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, Problem, build_method
from softtoken.methods.adc import ADC, draw_discrete, is_one_hot

NATURAL_TARGETS = "bench/results/natural/targets.json"
ROUNDINGS = ("argmax", "draws", "coordinate", "nearest")


def wrong_and_losses(lm, prompts: torch.Tensor, context) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrong target tokens (N,) and mean cross-entropy (N,) of discrete prompts (N, L) (copy_swaps.py's scoring)."""
    return wrong_and_loss(lm, prompts, context.target_tensor(lm.device))


def coordinate_descent(lm, rows: torch.Tensor, context) -> int:
    """Wrong tokens of the prompt that up to three greedy single swaps within the support of rows (L, V) reach from
    the argmax."""
    current = rows.argmax(-1)
    wrong, loss = (value[0] for value in wrong_and_losses(lm, current[None], context))
    for _ in range(3):
        swaps = [current.clone().index_fill_(0, torch.tensor([p]), v) for p in range(rows.shape[0])
                 for v in rows[p].nonzero().flatten().tolist() if v != int(current[p])]
        if not swaps:
            return int(wrong)
        swap_wrong, swap_losses = wrong_and_losses(lm, torch.stack(swaps), context)
        best = int(swap_losses.argmin())
        if swap_losses[best] >= loss:
            return int(wrong)
        current, wrong, loss = swaps[best], swap_wrong[best], swap_losses[best]
    return int(wrong)


class MeasuredADC(ADC):
    """ADC that records, outside its own path, the discrete prompts around each relaxed near miss."""

    def __init__(self, config, generator: torch.Generator) -> None:
        super().__init__(config)
        self.generator, self.argmax_wrong, self.near, self.steps_seen = generator, Counter(), [], 0

    def _losses(self, objective, lm, relaxed, context):
        out = super()._losses(objective, lm, relaxed, context)
        rows = relaxed.detach()
        with torch.no_grad():
            argmax_wrong, _ = wrong_and_losses(lm, rows.argmax(-1), context)  # (B,)
            self.argmax_wrong.update(min(int(w), 5) for w in argmax_wrong)
            mixture_wrong = (out[1] != context.target_tensor(lm.device)).sum(-1)  # (B,)
            near = (mixture_wrong <= 2) & ~is_one_hot(rows)  # (B,)
            self.steps_seen += 1
            if near.any() and self.steps_seen % 5 == 0:
                b = int(torch.where(near, out[0].detach(), torch.inf).argmin())
                self.near.append(self._roundings(lm, rows[b], context, int(mixture_wrong[b]),
                                                 int(argmax_wrong[b])))
        return out

    def _roundings(self, lm, rows: torch.Tensor, context, mixture: int, argmax: int) -> dict[str, int]:
        draws, _ = wrong_and_losses(lm, draw_discrete(rows, 32, self.generator), context)
        nearest = torch.cdist(rows @ lm.prompt_matrix.float(), lm.prompt_matrix.float()).argmin(-1)  # (L,)
        nearest_wrong, _ = wrong_and_losses(lm, nearest[None], context)
        return {"mixture": mixture, "support": int((rows > 0).sum(-1).max()), "argmax": argmax,
                "draws": int(draws.min()), "coordinate": coordinate_descent(lm, rows, context),
                "nearest": int(nearest_wrong[0])}


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    seed, steps, targets = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    torch.set_num_threads(1)
    lm, config = as_softlm(None), build_method(None, "adc-copy", {}).config
    samples = {t.id: t for t in load_targets(NATURAL_TARGETS).targets}
    print("| target | prompt-steps | argmax <= 1 wrong | near misses (mixture <= 2) | median wrong: "
          + " / ".join(ROUNDINGS) + " | within 1: " + " / ".join(ROUNDINGS) + " |")
    print("| --- | --- | --- | --- | --- | --- |")
    for target_id in targets:
        method = MeasuredADC(config, torch.Generator().manual_seed(seed))
        problem = Problem(lm=lm, target_ids=samples[target_id].resolve_ids(lm), prompt_length=10,
                          seed=run_seed(run_key("paired", "-", seed, target_id)))
        result = method.run(problem, Budget(steps=steps))
        for near in method.near:
            print("  near miss:", near, file=sys.stderr)
        counts = method.argmax_wrong
        medians = [statistics.median(n[r] for n in method.near) if method.near else float("nan") for r in ROUNDINGS]
        within = [sum(n[r] <= 1 for n in method.near) for r in ROUNDINGS]
        print(f"| {target_id} ({'exact at step ' + str(result.success_step) if result.exact_match else 'miss'}) "
              f"| {sum(counts.values())} | {counts[0] + counts[1]} | {len(method.near)} | "
              + " / ".join(f"{m:g}" for m in medians) + " | " + " / ".join(map(str, within)) + " |", flush=True)


if __name__ == "__main__":
    main()
