"""Switching the `adc-polish` runs that look stuck to `gcg-fast`, simulated from one day's runs of both rows
(docs/benchmarks.md §6, "Switching stuck runs to GCG").

The two rows reach different targets (`gcg-fast` inverts natural_11 and 12, which 180 s `adc-polish` runs rarely
do), and an unconditional budget split is level. A policy: at `check` seconds an `adc-polish` run that has not
succeeded and whose lowest relaxed loss so far is above a limit stops, and `gcg-fast` with the same seed gets the
rest of the 180 s. The budget only stops a run, so a stored run's first x s are its run at an x s budget: the
switched run succeeds when the `gcg-fast` run of that target and seed succeeds within 180 - check s. The second
model load is not counted, which flatters switching.

Usage: python bench/screens/switch_policy.py [STORE]  (default bench/results/screen-threads-baseline: both rows,
       seeds 1 and 2, 2026-12-07)
"""

import statistics
import sys

from hit_rates import screen_runs, seconds_to_success
from restart_policy import BUDGET, CHECKS, lowest_loss, run_summary

LOSS_LIMITS = (0.6, 0.8, 0.9, 1.0, 1.1, 1.2)  # switch when the lowest loss so far is above


def hits_per_seed(adc: dict, gcg: dict, check: float, limit: float) -> tuple[list[int], int]:
    """Targets inverted per seed under the policy, and how many runs it switched."""
    counts, switched = [], 0
    for seed in sorted(adc):
        count = 0
        for target, run in adc[seed].items():
            if run["success"] <= check or lowest_loss(run, check) <= limit:
                count += run["success"] <= BUDGET
                continue
            switched += 1
            count += seconds_to_success(gcg[seed].get(target), BUDGET) <= BUDGET - check
        counts.append(count)
    return counts, switched


def main() -> None:
    store = sys.argv[1] if len(sys.argv) == 2 else "bench/results/screen-threads-baseline"
    adc_runs, gcg_runs = screen_runs(store, "adc-polish"), screen_runs(store, "gcg-fast")
    seeds = sorted(adc_runs.keys() & gcg_runs.keys())
    adc = {seed: {t: run_summary(r) for t, r in adc_runs[seed].items()} for seed in seeds}
    gcg = {seed: gcg_runs[seed] for seed in seeds}
    alone = [sum(run["success"] <= BUDGET for run in adc[seed].values()) for seed in seeds]
    union = [sum(run["success"] <= BUDGET or seconds_to_success(gcg[seed].get(t), BUDGET) <= BUDGET
                 for t, run in adc[seed].items()) for seed in seeds]
    print(f"{store}, seeds {seeds}: adc-polish alone {alone}, the union of both whole runs {union}")
    print("\nswitch when the lowest loss is above the limit at the check: targets per seed, mean (runs switched)")
    print("| check s | " + " | ".join(str(limit) for limit in LOSS_LIMITS) + " |")
    print("| --- |" + " --- |" * len(LOSS_LIMITS))
    for check in CHECKS:
        cells = [hits_per_seed(adc, gcg, check, limit) for limit in LOSS_LIMITS]
        print(f"| {check} | " + " | ".join(f"{counts} {statistics.mean(counts):.1f} ({switched})"
                                            for counts, switched in cells) + " |")


if __name__ == "__main__":
    main()
