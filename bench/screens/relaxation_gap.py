"""The relaxation gap of a PGD row, from its stored histories (docs/benchmarks.md §6): per run, the lowest relaxed
loss the batch reached (`loss/target_best`), the step it came at, the entropy of the rows then (`relax/entropy`,
Tsallis-2: 0 one-hot) and the lowest discrete loss of the argmax prompts by then (`loss/discrete_best`), and the
discrete loss at the end; then the medians over the runs.

Usage: python bench/screens/relaxation_gap.py STORE LABEL   (e.g. bench/results/natural pgd-short)
"""

import statistics
import sys

from hit_rates import history, screen_runs


def gap_row(record: dict) -> tuple[float, int, float, float, float]:
    """(lowest relaxed loss, its step, entropy then, discrete loss then, discrete loss at the end) of one run."""
    keys = history(record)
    relaxed, discrete = keys["loss/target_best"], keys["loss/discrete_best"]
    step = min(range(len(relaxed)), key=relaxed.__getitem__)
    return relaxed[step], step + 1, keys["relax/entropy"][step], discrete[step], discrete[-1]


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    store, label = sys.argv[1:]
    rows = []
    print("| target | seed | lowest relaxed loss | at step | entropy then | discrete loss then | discrete at the end |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for seed, run in sorted(screen_runs(store, label).items()):
        for target, record in sorted(run.items()):
            row = gap_row(record)
            rows.append(row)
            print(f"| {target} | {seed} | {row[0]:.3f} | {row[1]} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.2f} |")
    medians = [statistics.median(column) for column in zip(*rows)]
    print(f"| median of {len(rows)} | | {medians[0]:.3f} | {medians[1]:.0f} | {medians[2]:.2f} | {medians[3]:.2f} "
          f"| {medians[4]:.2f} |")


if __name__ == "__main__":
    main()
