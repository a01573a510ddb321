"""A paired row at a longer budget beside the same row at a shorter one (docs/benchmarks.md §6, "`adc-copy` at
360 s"). Under `paired_seeds` a run's path does not depend on its budget, so a short run's success is a long run's
success at the same step and only the short row's misses need the long budget. That holds while the
arithmetic is the same: a rerun whose loss history does not start with the short run's whole history took another
path (the arithmetic summed in another order: the losses differ by ~4e-7 relative from step 1 and the paths
part later), and then the seed is only counted where every target has a long run of its own. Per seed: the
targets inverted by the short budget (the runs' seconds to success) and by the long one, the successes the long
budget added and the targets it still missed.

Usage: python bench/screens/longer_budget.py SHORT LONG
       (each STORE:LABEL, SHORT possibly pooled as STORE:LABEL+STORE2, as in row_table.py; e.g.
       bench/results/screen-copy-paired:adc-copy-paired+bench/results/screen-copy-paired-rest
       bench/results/screen-copy-360:adc-copy-paired-360s)
"""

import json
import sys

from hit_rates import exact, history
from row_table import row_runs


def same_start(short: dict, long: dict) -> bool:
    """Whether the long run's loss history begins with the short run's whole history."""
    a, b = history(short)["loss/target"], history(long)["loss/target"]
    return len(b) >= len(a) and b[:len(a)] == a


def by(record: dict, seconds: float) -> bool:
    """Whether the run inverted its target within `seconds`."""
    return exact(record) and record["result"]["wall_time_s"] <= seconds


def seed_row(seed: int, short: dict[str, dict], long: dict[str, dict], seconds: float) -> tuple[str, int, int]:
    """One seed's table row, and its counts at the short and the long budget (-1: not countable)."""
    differ = sorted(t for t, record in long.items() if t in short and not same_start(short[t], record))
    missing = sorted(t for t in short if t not in long and (differ or not exact(short[t])))
    if missing:
        return f"| {seed} | – | – | {len(long)} run; no long run of {missing} |", -1, -1
    runs = {t: long.get(t, short[t]) for t in short}
    # On the same paths the short run says what the short budget did (its last step may end past `seconds`).
    early = {t: by(r, seconds) if differ else exact(short[t]) for t, r in runs.items()}
    at_short, at_long = sum(early.values()), sum(exact(r) for r in runs.values())
    added = ", ".join(f"{t} {r['result']['wall_time_s']:.0f} s" for t, r in sorted(runs.items())
                      if exact(r) and not early[t]) or "none"
    kind = rerun_whole(short, long, early, differ) if differ else f"{len(long)} misses rerun, the same paths"
    missed = ", ".join(t for t, r in sorted(runs.items()) if not exact(r)) or "none"
    return (f"| {seed} | {at_short} / {len(runs)} | {at_long} / {len(runs)} | {kind} | {added} | {missed} |",
            at_short, at_long)


def rerun_whole(short: dict[str, dict], long: dict[str, dict], early: dict[str, bool], differ: list[str]) -> str:
    """A seed run whole: how far its first losses are from the short runs', and the targets whose success by the
    short budget differs between the two sets of runs."""
    gap = max(abs(history(long[t])["loss/target"][0] / history(short[t])["loss/target"][0] - 1) for t in differ)
    only_short = [t for t in sorted(short) if exact(short[t]) and not early[t]]
    only_long = [t for t in sorted(short) if early[t] and not exact(short[t])]
    return (f"all {len(long)} rerun; paths differ from the short runs' (step 1's loss by up to {gap:.1e}); "
            f"by the short budget only the short runs {only_short}, only these {only_long}")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    short, long = row_runs(sys.argv[1], None), row_runs(sys.argv[2], None)
    with open(f"{sys.argv[1].split(':', 1)[0]}/spec.json") as spec:
        seconds = json.load(spec)["budget"]["seconds"]
    print(f"| seed | by {seconds:.0f} s | by the long budget | runs | added (seconds to success) | missed |")
    print("| --- | --- | --- | --- | --- | --- |")
    counted = []
    for seed in sorted({seed for seed, _ in long}):
        line, at_short, at_long = seed_row(seed, {t: r for (s, t), r in short.items() if s == seed},
                                           {t: r for (s, t), r in long.items() if s == seed}, seconds)
        print(line)
        if at_short >= 0:
            counted.append((at_short, at_long))
    print(f"\n{len(counted)} seeds counted: {sum(a for a, _ in counted)} by {seconds:.0f} s, "
          f"{sum(b for _, b in counted)} by the long budget")


if __name__ == "__main__":
    main()
