"""A paired row at a longer budget run only on the shorter row's misses (docs/benchmarks.md §6, "`adc-copy` at
360 s"): under `paired_seeds` a run's path does not depend on its budget, so a short run's success is a long run's
success at the same step. This checks that on every rerun (the long run's loss history starts with the short run's
whole history; a run that does not is reported and counted as a miss), then gives per seed the targets inverted at
the short budget and at the long one, and the seconds to each success the long budget added.

Usage: python bench/screens/longer_budget.py SHORT LONG
       (each STORE:LABEL, SHORT possibly pooled as STORE:LABEL+STORE2, as in row_table.py; e.g.
       bench/results/screen-copy-paired:adc-copy-paired+bench/results/screen-copy-paired-rest
       bench/results/screen-copy-360:adc-copy-paired-360s)
"""

import sys

from hit_rates import exact, history
from row_table import row_runs


def same_start(short: dict, long: dict) -> bool:
    """Whether the long run's loss history begins with the short run's whole history."""
    a, b = history(short)["loss/target"], history(long)["loss/target"]
    return len(b) >= len(a) and b[:len(a)] == a


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    every_seed = set(range(1000))
    short, long = row_runs(sys.argv[1], every_seed), row_runs(sys.argv[2], every_seed)
    seeds = sorted({seed for seed, _ in long})
    print("| seed | short budget | long budget | runs rerun | added (seconds to success) |")
    print("| --- | --- | --- | --- | --- |")
    totals = [0, 0]
    for seed in seeds:
        runs = {target: record for (s, target), record in short.items() if s == seed}
        misses = sorted(target for target, record in runs.items() if not exact(record))
        rerun = {target: long[(seed, target)] for target in misses if (seed, target) in long}
        diverged = [target for target, record in rerun.items() if not same_start(runs[target], record)]
        added = {target: record for target, record in rerun.items() if exact(record) and target not in diverged}
        inverted = len(runs) - len(misses)
        totals[0], totals[1] = totals[0] + inverted, totals[1] + inverted + len(added)
        cells = ", ".join(f"{t} {r['result']['wall_time_s']:.0f} s" for t, r in sorted(added.items())) or "none"
        note = f"; paths differ: {diverged}" if diverged else ""
        print(f"| {seed} | {inverted} / {len(runs)} | {inverted + len(added)} / {len(runs)} | "
              f"{len(rerun)} of {len(misses)} misses | {cells}{note} |")
    print(f"\n{len(seeds)} seeds: {totals[0]} at the short budget, {totals[1]} at the long one")


if __name__ == "__main__":
    main()
