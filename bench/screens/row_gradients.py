"""How unevenly ADC's gradient falls on a prompt's positions (issue 12, docs/benchmarks.md §6, screen 25): runs
`adc-polish` for --steps steps on natural targets, records every SGD step's gradient row norms (B, L), divides each
prompt's rows by its largest, and prints per position the median of that ratio over prompts and steps, for the
first step (the dense start) and for later windows. A position at 0.2 moves a fifth as fast as the leading one
under one lr; `ADCConfig.balance_rows` evens that out.

Usage: python bench/screens/row_gradients.py bench/results/screen-budget-720/targets.json natural_05 natural_15
       [--steps 80] [--seed 0] [--threads 1]
"""

from __future__ import annotations

import torch
from stored_targets import targets_args  # bench/screens/stored_targets.py, next to this script

from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import ADC, adc_polish
from softtoken.methods.base import Budget, Problem

WINDOWS = ((0, 1), (1, 10), (10, 40), (40, None))


def recorded_row_norms(problem: Problem, steps: int) -> tuple[torch.Tensor, bool]:
    """Every step's gradient row norms (S, B, L) of an `adc-polish` run, and whether it inverted the target."""
    norms, sgd_step = [], torch.optim.SGD.step

    def recording(optimizer, *args, **kwargs):  # ADC's one optimiser: its one parameter is the relaxed prompts
        norms.append(optimizer.param_groups[0]["params"][0].grad.norm(dim=-1).detach().clone())
        return sgd_step(optimizer, *args, **kwargs)

    torch.optim.SGD.step = recording
    try:
        result = ADC(adc_polish()).run(problem, Budget(steps=steps))
    finally:
        torch.optim.SGD.step = sgd_step
    return torch.stack(norms), result.exact_match


def main() -> None:
    args, samples = targets_args(__doc__, steps=80)
    lm = as_softlm(None)
    for name, target in samples.items():
        problem = Problem(lm=lm, target_ids=target.ids, prompt_length=10, seed=args.seed)
        norms, exact = recorded_row_norms(problem, args.steps)  # (S, B, L)
        relative = norms / norms.amax(-1, keepdim=True)  # (S, B, L)
        print(f"{name} seed {args.seed}: {len(norms)} steps, {'inverted' if exact else 'not inverted'}")
        for start, end in WINDOWS:
            window = relative[start:end]
            if len(window):
                medians = window.flatten(0, 1).median(0).values  # (L,)
                print(f"  steps {start + 1}-{start + len(window)}: " + " ".join(f"{v:.2f}" for v in medians.tolist()),
                      flush=True)


if __name__ == "__main__":
    main()
