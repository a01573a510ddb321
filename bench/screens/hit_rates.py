"""How often each natural target falls, over several bench rows and seeds (docs/benchmarks.md §6), and what a
constant success rate predicts for k times the budget: a target inverted in n of N runs has p = n / N per run,
and 1 - (1 - p) ** k at k times the budget. Also the medians of two rows on the (target, seed) runs both invert.

Usage: python bench/screens/hit_rates.py [A_LABEL B_LABEL]
Reads bench/results/natural (adc-s10-polish counts as adc-polish) and bench/results/natural-seeds.
"""

import json
import statistics
import sys
from collections import defaultdict

ROWS = {"bench/results/natural": ("adc-s10-polish", "adc-polish-m09", "adc-polish-share20"),
        "bench/results/natural-seeds": ("adc-polish", "adc-polish-m09", "adc-polish-share20")}
successes: dict[tuple[str, int], dict[str, tuple[float, int] | None]] = defaultdict(dict)
for store, labels in ROWS.items():
    for line in open(f"{store}/results.jsonl"):
        record = json.loads(line)
        result = record.get("result")
        if record["label"] in labels and result:
            label = record["label"].replace("adc-s10-polish", "adc-polish")
            exact = result["metrics"]["eval/exact_match"]
            successes[(label, record["seed"])][record["target_id"]] = \
                (result["wall_time_s"], result["forward_tokens"]) if exact else None
runs = list(successes.values())
targets = sorted({target for run in runs for target in run})
rates = {target: sum(run.get(target) is not None for run in runs) / len(runs) for target in targets}
print(f"{len(runs)} runs: " + ", ".join(f"{label} seed {seed}" for label, seed in sorted(successes)))
for target in targets:
    print(f"{target}: {round(rates[target] * len(runs))} of {len(runs)}")
for k in (1, 2, 4):
    print(f"expected targets a run at {k}x the budget: {sum(1 - (1 - p) ** k for p in rates.values()):.1f}")
if len(sys.argv) == 3:
    a, b = ({key[1]: run for key, run in successes.items() if key[0] == label} for label in sys.argv[1:])
    shared = [(a[seed][t], b[seed][t]) for seed in a.keys() & b.keys() for t in a[seed]
              if a[seed][t] is not None and b[seed].get(t) is not None]
    seconds = [statistics.median(pair[i][0] for pair in shared) for i in (0, 1)]
    tokens = [statistics.median(pair[i][1] for pair in shared) for i in (0, 1)]
    print(f"{len(shared)} runs both invert: median s {seconds[0]:.1f} against {seconds[1]:.1f}, "
          f"forward tokens {tokens[0]:.0f} against {tokens[1]:.0f}")
