"""What the gathered mixture (softtoken/lm/mixture.py) saves ADC (issue 12, docs/benchmarks.md §6), on one thread,
for four 10-token prompts whose rows hold 3 tokens each (ADC's rows after its first steps):

1. the embedding mixture alone, forward and forward + backward, dense and gathered (mean over --repeats after a
   warm-up);
2. ADC's loss pass (the mixture, the model's forward on natural_15's 10-token target, the backward to the rows),
   dense and gathered in turn for --rounds rounds (so drift of the machine falls on both), as the median and the
   fastest of each; and the largest difference between the two gradients.

Whole runs are not timed: the two mixtures round differently, and under ADC's momentum 0.99 two runs soon take
different paths (other polishes, other judge calls), which moves a run's seconds more than the mixture does.

Usage: python bench/screens/sparse_mixture.py [--threads 1] [--repeats 20] [--rounds 40]
"""

from __future__ import annotations

import statistics
import time

import torch
from timing import seconds, thread_args  # bench/screens/timing.py, next to this script

from softtoken.lm import mixture
from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import project_top_s
from softtoken.objectives import ObjectiveContext, TargetCE

TARGET_TEXT = " in the study, 15 were women and"  # natural_15's target
WIDTHS = {"dense": 0, "gathered": mixture.SPARSE_MAX_WIDTH}  # SPARSE_MAX_WIDTH 0: every mixture is dense
args = thread_args(__doc__, rounds=40)
lm = as_softlm(None)
context, objective = ObjectiveContext(target_ids=tuple(lm.encode(TARGET_TEXT))), TargetCE()
generator = torch.Generator().manual_seed(0)
start = torch.softmax(torch.randn(4, 10, lm.prompt_vocab_size, generator=generator), -1)
rows = project_top_s(start, torch.full((4,), 3)).requires_grad_(True)  # (4, 10, V), 3 tokens a row


def mixture_pass(backward: bool) -> None:
    embeds = lm.embed_probs(rows)
    if backward:
        embeds.sum().backward()
        rows.grad = None


def loss_pass() -> torch.Tensor:
    losses, _ = objective.loss_and_predictions(lm, rows, context)
    losses.mean().backward()
    grad, rows.grad = rows.grad, None
    return grad


for name, width in WIDTHS.items():
    mixture.SPARSE_MAX_WIDTH = width
    with torch.no_grad():
        print(f"mixture forward, {name}: {seconds(lambda: mixture_pass(False), args.repeats) * 1e3:.1f} ms")
    print(f"mixture forward + backward, {name}: {seconds(lambda: mixture_pass(True), args.repeats) * 1e3:.1f} ms",
          flush=True)

gradients, times = {}, {name: [] for name in WIDTHS}
for round_ in range(args.rounds):
    for name, width in WIDTHS.items():
        mixture.SPARSE_MAX_WIDTH = width
        gradients[name] = loss_pass()  # also the warm-up of this round's timed pass
        begin = time.perf_counter()
        loss_pass()
        times[name].append(time.perf_counter() - begin)
for name, values in times.items():
    print(f"loss pass, {name}: median {statistics.median(values):.3f} s, fastest {min(values):.3f} s")
print(f"largest gradient difference {(gradients['dense'] - gradients['gathered']).abs().max():.1e} "
      f"(largest entry {gradients['dense'].abs().max():.1e})")
