"""Lever screen (docs/benchmarks.md §6): how good a start is the target's own tokens?

For each natural opening (bench/natural_openings.txt, the first N lines, cut to 10 tokens) the target is the
embedded model's 10-token greedy continuation. Prints the teacher-forced loss (mean cross-entropy) and token
accuracy of four 10-token starts: the ground-truth opening, nanoGCG's " x" * 10, the target's tokens as
they are, and the start GCG's `init_strategy="target"` picks (the lowest-loss rotation of the target).

Usage: python bench/screens/target_start.py [N=20] [THREADS=2]
"""

import statistics
import sys
from pathlib import Path

import torch

from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, GCGConfig, Problem
from softtoken.methods.gcg import GCG

count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 2)
lm = as_softlm(None)
openings = Path(__file__).resolve().parents[1] / "natural_openings.txt"
lines = [line.strip() for line in openings.read_text().splitlines() if line.strip() and not line.startswith("#")]
x = lm.encode(" x")[0]
rows: dict[str, list[tuple[float, float]]] = {}
for line in lines[:count]:
    truth = lm.encode(line)[:10]
    target = lm.greedy_generate(torch.tensor([truth]), 10)[0].tolist()
    method = GCG(GCGConfig(init_strategy="target"))
    run = method.harness(Problem(lm=lm, target_ids=tuple(target), prompt_length=10), Budget(steps=1))
    objective = method.objective(run.problem)
    picked = lm.to_model_ids(method._init(run, objective)).tolist()
    starts = {"ground truth": truth, "' x' * 10": [x] * 10, "target as is": target, "target start (picked)": picked}
    index = torch.searchsorted(lm.allowed_ids, torch.tensor(list(starts.values())))
    with torch.no_grad():
        losses, predictions = objective.hard_loss_and_predictions(lm, index, run.context)
    accuracy = (predictions == torch.tensor(target)).float().mean(-1)
    for name, loss, acc in zip(starts, losses.tolist(), accuracy.tolist()):
        rows.setdefault(name, []).append((loss, acc))
print(f"| start ({count} targets) | mean loss | mean teacher-forced token accuracy |")
print("| --- | --- | --- |")
for name, values in rows.items():
    print(f"| {name} | {statistics.mean(v[0] for v in values):.2f} | {statistics.mean(v[1] for v in values):.2f} |")
