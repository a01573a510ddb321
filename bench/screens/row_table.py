"""Several bench rows side by side on the targets of the first and the seeds given (docs/benchmarks.md §6, the chain
screens): seconds to success per target and seed, then per row the targets inverted per seed, mean LCS and token
accuracy, the median steps of a miss, the mean steps, the median seconds and forward tokens to success and how
many exact prompts paste (and the median seconds over every run with a miss counted last, which compares rows that
invert different targets), the median forward tokens a second, and (with `chain_width`) the median share of steps
that took a chain step; against the first row, the ratios of the median seconds and forward tokens on the runs both
invert, their union per seed, and the mean per seed of a 180 s budget split between them (the first row's first
x s, then this row's first 180 - x s: a stored run's first x s are its run at an x s budget; the second model load
is not counted, which flatters the split).

Usage: python bench/screens/row_table.py SEEDS STORE:LABEL [STORE:LABEL ...]   (SEEDS e.g. 1,2; a row may be
       given twice with two stores, STORE:LABEL+STORE2, whose runs are pooled, e.g. one row split over two specs)
"""

import statistics
import sys

from hit_rates import exact, history, screen_runs


def row_runs(row: str, seeds: set[int] | None) -> dict[tuple[int, str], dict]:
    """(seed, target) -> record of the row STORE:LABEL (or STORE:LABEL+STORE2...), only the given seeds (None:
    every seed)."""
    stores, label = row.split(":", 1)[0], row.split(":", 1)[1].split("+")[0]
    runs = {}
    for store in [stores, *row.split(":", 1)[1].split("+")[1:]]:
        for seed, targets in screen_runs(store, label).items():
            runs.update({(seed, target): record for target, record in targets.items() if seeds is None or seed in seeds})
    return runs


def cell(record: dict | None) -> str:
    if record is None:
        return "–"
    return f"{record['result']['wall_time_s']:.0f} s" if exact(record) else "miss"


def summary(runs: dict[tuple[int, str], dict], targets: list[str], seeds: list[int]) -> str:
    records = [runs[key] for key in runs if key[1] in targets]
    results = [record["result"] for record in records]
    if not results:
        return "no finished run"
    wins = [result for record, result in zip(records, results) if exact(record)]
    chained = [statistics.mean(keys["relax/chained"]) for keys in map(history, records) if "relax/chained" in keys]
    parts = [f"per seed {[sum(exact(runs.get((s, t))) for t in targets) for s in seeds]}",
             f"mean LCS {statistics.mean(r['metrics']['eval/lcs_ratio'] for r in results):.2f}",
             f"token acc. {statistics.mean(r['metrics']['eval/token_accuracy'] for r in results):.2f}",
             f"mean steps {statistics.mean(r['steps_run'] for r in results):.0f}",
             f"fwd tokens/s {statistics.median(r['forward_tokens'] / r['wall_time_s'] for r in results):.0f}"]
    misses = [r["steps_run"] for record, r in zip(records, results) if not exact(record)]
    if misses:
        parts.append(f"steps of a miss {statistics.median(misses):.0f}")
    if wins:
        every = [r["wall_time_s"] if exact(record) else float("inf") for record, r in zip(records, results)]
        parts.append(f"to success {statistics.median(r['wall_time_s'] for r in wins):.1f} s / "
                     f"{statistics.median(r['forward_tokens'] for r in wins):.0f} tokens "
                     f"({statistics.median(every):.1f} s over every run, a miss counted last), "
                     f"{sum(r['metrics']['eval/roundtrip_exact'] for r in wins)} of {len(wins)} paste")
    if chained:
        parts.append(f"chained share {statistics.median(chained):.2f}")
    return ", ".join(parts)


def against_first(runs: dict, first: dict, targets: list[str], seeds: list[int]) -> str:
    both = [key for key in runs if key[1] in targets and exact(runs[key]) and exact(first.get(key))]
    union = [sum(exact(runs.get((s, t))) or exact(first.get((s, t))) for t in targets) for s in seeds]
    if not both:
        return f"against the first row: no run both invert; union per seed {union}"
    ratios = [statistics.median(runs[key]["result"][name] for key in both)
              / statistics.median(first[key]["result"][name] for key in both) for name in ("wall_time_s",
                                                                                            "forward_tokens")]
    return (f"against the first row, on the {len(both)} runs both invert: {ratios[0]:.2f}x the seconds, "
            f"{ratios[1]:.2f}x the forward tokens; union per seed {union}")


def within(record: dict | None, seconds: float) -> bool:
    return exact(record) and record["result"]["wall_time_s"] <= seconds


def splits(runs: dict, first: dict, targets: list[str], seeds: list[int], budget: float = 180.0) -> str:
    """Per seed, mean targets inverted when the first row runs x s and then this row the rest, for x in 30-150 s."""
    means = []
    for head in range(30, int(budget), 30):
        per_seed = [sum(within(first.get((s, t)), head) or within(runs.get((s, t)), budget - head) for t in targets)
                    for s in seeds]
        means.append(f"{head} s: {statistics.mean(per_seed):.1f}")
    return "a split, the first row's first x s, then this row: " + ", ".join(means)


def main() -> None:
    if len(sys.argv) < 3 or not all(part.isdigit() for part in sys.argv[1].split(",")):
        sys.exit(f"usage: row_table.py SEEDS STORE:LABEL [STORE:LABEL ...]; got {sys.argv[1:]}")
    seeds = sorted(int(part) for part in sys.argv[1].split(","))
    for row in sys.argv[2:]:
        if ":" not in row:
            sys.exit(f"row_table.py: a row is STORE:LABEL (or STORE:LABEL+STORE2), got {row!r}")
    rows = {row: row_runs(row, set(seeds)) for row in sys.argv[2:]}
    targets = sorted({target for runs in rows.values() for _, target in runs})  # a row cut short lacks some
    print("| target | " + " | ".join(rows) + " |")
    for target in targets:
        print(f"| {target} | " + " | ".join(", ".join(cell(runs.get((s, target))) for s in seeds)
                                         for runs in rows.values()) + " |")
    first = next(iter(rows.values()))
    for number, (row, runs) in enumerate(rows.items()):
        print(f"{row}: {sum(exact(runs.get((s, t))) for s in seeds for t in targets)} of "
              f"{len(seeds) * len(targets)}; {summary(runs, targets, seeds)}")
        if number:
            print(f"  {against_first(runs, first, targets, seeds)}")
            print(f"  {splits(runs, first, targets, seeds)}")


if __name__ == "__main__":
    main()
