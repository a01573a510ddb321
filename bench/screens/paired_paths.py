"""Two rows of a paired screen (`paired_seeds: true`, docs/benchmarks.md §6, "Copy swaps"), run by run: each row's
outcome and steps, and the first step at which their loss histories differ ("same" when one is a prefix of the
other: the rows took the same path, step for step, until one of them stopped); then the count of runs that each
row alone inverted. Under paired seeds a row whose option leaves the path alone until a hit differs from the other
only where the option acted.

Usage: python bench/screens/paired_paths.py STORE LABEL_A LABEL_B
"""

import sys

from hit_rates import exact, history, screen_runs


def first_difference(a: list[float], b: list[float]) -> int | None:
    """The first step (1-based) at which two loss histories differ; None when one is a prefix of the other."""
    return next((step + 1 for step, (x, y) in enumerate(zip(a, b)) if x != y), None)


def outcome(record: dict) -> str:
    """Hit or miss, at which step, and with copy swaps how many distinct prompts had them scored."""
    copied = history(record).get("relax/copied")
    tried = f", {copied[-1]:.0f} copied" if copied else ""
    return f"{'hit' if exact(record) else 'miss'} at step {record['result']['steps_run']}{tried}"


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    store, first, second = sys.argv[1:]
    runs_a, runs_b = screen_runs(store, first), screen_runs(store, second)
    print(f"| target | seed | {first} | {second} | paths differ from step |")
    print("| --- | --- | --- | --- | --- |")
    counts = {"both": 0, first: 0, second: 0, "neither": 0}
    for seed in sorted(set(runs_a) & set(runs_b)):
        for target in sorted(set(runs_a[seed]) & set(runs_b[seed])):
            a, b = runs_a[seed][target], runs_b[seed][target]
            step = first_difference(history(a)["loss/target"], history(b)["loss/target"])
            print(f"| {target} | {seed} | {outcome(a)} | {outcome(b)} | {'same' if step is None else step} |")
            hit_a, hit_b = exact(a), exact(b)
            counts["both" if hit_a and hit_b else first if hit_a else second if hit_b else "neither"] += 1
    print(f"\n{sum(counts.values())} paired runs: both inverted {counts['both']}, only {first} {counts[first]}, "
          f"only {second} {counts[second]}, neither {counts['neither']}")


if __name__ == "__main__":
    main()
