"""How often each natural target falls, over several bench rows and seeds (docs/benchmarks.md §6), the seconds
to each success (which say whether a run's chance per second is constant), and what a constant success rate
predicts for k times the budget: a target inverted in n of N runs has p = n / N per run, and 1 - (1 - p) ** k at
k times the budget. Also the medians of two rows on the (target, seed) runs both invert, or a screen row's count
per target next to the baseline's.

Usage: python bench/screens/hit_rates.py [A_LABEL B_LABEL]
       python bench/screens/hit_rates.py --screen STORE LABEL   (e.g. bench/results/screen-levers-17 adc-polish-b2)
Reads bench/results/natural (adc-s10-polish counts as adc-polish) and bench/results/natural-seeds.
"""

import json
import statistics
import sys
from collections import defaultdict

ROWS = {"bench/results/natural": ("adc-s10-polish", "adc-polish-m09", "adc-polish-share20"),
        "bench/results/natural-seeds": ("adc-polish", "adc-polish-m09", "adc-polish-share20")}
Runs = dict[tuple[str, int], dict[str, tuple[float, int] | None]]


def read_runs(rows: dict[str, tuple[str, ...]]) -> Runs:
    """(label, seed) -> target -> (seconds, forward tokens) to success, or None for a miss."""
    successes: Runs = defaultdict(dict)
    for store, labels in rows.items():
        for line in open(f"{store}/results.jsonl"):
            record = json.loads(line)
            result = record.get("result")
            if record["label"] in labels and result:
                label = record["label"].replace("adc-s10-polish", "adc-polish")
                exact = result["metrics"]["eval/exact_match"]
                successes[(label, record["seed"])][record["target_id"]] = \
                    (result["wall_time_s"], result["forward_tokens"]) if exact else None
    return successes


def hits(runs: list[dict[str, tuple[float, int] | None]], target: str) -> int:
    return sum(run.get(target) is not None for run in runs)


successes = read_runs(ROWS)
runs = list(successes.values())
targets = sorted({target for run in runs for target in run})
rates = {target: hits(runs, target) / len(runs) for target in targets}
print(f"{len(runs)} runs: " + ", ".join(f"{label} seed {seed}" for label, seed in sorted(successes)))
if len(sys.argv) == 4 and sys.argv[1] == "--screen":
    screen_runs = read_runs({sys.argv[2]: (sys.argv[3],)})
    seeds = sorted(seed for _, seed in screen_runs)
    screen = list(screen_runs.values())
    preset = [run for (label, seed), run in successes.items() if label == "adc-polish" and seed in seeds]
    shown = sorted({target for run in screen for target in run})
    print(f"{sys.argv[3]} against adc-polish, seeds {seeds} (a seed's run may still be going)")
    for target in shown:
        print(f"{target}: {hits(screen, target)} of {len(screen)} (adc-polish {hits(preset, target)} of {len(preset)},"
              f" all {round(rates[target] * len(runs))} of {len(runs)})")
    print(f"successes: {sum(hits(screen, t) for t in shown)} against {sum(hits(preset, t) for t in shown)} "
          f"(expected from all {len(runs)}: {sum(rates[t] for t in shown) * len(screen):.1f})")
    sys.exit()
for target in targets:
    seconds = sorted(round(run[target][0]) for run in runs if run.get(target) is not None)
    print(f"{target}: {round(rates[target] * len(runs))} of {len(runs)}, seconds to success {seconds}")
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
