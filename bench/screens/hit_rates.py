"""How often each natural target falls, over several bench rows and seeds (docs/benchmarks.md §6), the seconds
to each success (which say whether a run's chance per second is constant), and what a constant success rate
predicts for k times the budget: a target inverted in n of N runs has p = n / N per run, and 1 - (1 - p) ** k at
k times the budget. Also the medians of two rows on the (target, seed) runs both invert, or a screen row against
`adc-polish` on the screen's targets and seeds: counts per target and seed, mean LCS, steps, time to success,
pastes, and how far the lowest relaxed loss fell (`loss/target_best`, the lowest over ten steps).

With `--curve`, a row run at several times the 180 s budget (bench/screens/natural-budget-720.yaml) gives the
time curve itself: per seed, the targets inverted by 180, 360, 540 and 720 s (the natural targets every baseline
run inverts counted as inverted), against the constant-rate prediction, and the lowest loss of its misses.

Usage: python bench/screens/hit_rates.py [A_LABEL B_LABEL]
       python bench/screens/hit_rates.py --screen STORE LABEL   (e.g. bench/results/screen-levers-17 adc-polish-b2)
       python bench/screens/hit_rates.py --curve STORE LABEL    (e.g. bench/results/screen-budget-720 adc-polish-720s)
       python bench/screens/hit_rates.py --versus STORE LABEL OTHER [SEEDS]  (a screen row against a row of the
           baseline stores, e.g. gcg-fast, or STORE:LABEL, a row of another screen's store, on the screen's runs;
           STORE `baseline`: LABEL from those stores too; SEEDS, e.g. 0,1,2,3: only those seeds)
       python bench/screens/hit_rates.py --portfolio LABEL OTHER [STORE]  (a 180 s budget split: LABEL's first x s,
           then OTHER's first 180 - x s, e.g. adc-polish gcg-fast; LABEL from the baseline stores or, as
           STORE:LABEL, from that store; OTHER from the baseline stores or, given STORE, from that screen's store)
Reads bench/results/natural (adc-s10-polish counts as adc-polish) and bench/results/natural-seeds.
"""

import json
import os
import statistics
import sys
from collections import defaultdict

ROWS = {"bench/results/natural": ("adc-s10-polish", "adc-polish-m09", "adc-polish-share20"),
        "bench/results/natural-seeds": ("adc-polish", "adc-polish-m09", "adc-polish-share20")}
Record = dict  # a store's results.jsonl line, with "store" added


def read_records(rows: dict[str, tuple[str, ...]]) -> dict[tuple[str, int], dict[str, Record]]:
    """(label, seed) -> target -> finished record; adc-s10-polish is read as adc-polish."""
    records: dict[tuple[str, int], dict[str, Record]] = defaultdict(dict)
    for store, labels in rows.items():
        for line in open(f"{store}/results.jsonl"):
            record = json.loads(line)
            if record["label"] in labels and record.get("result"):
                label = record["label"].replace("adc-s10-polish", "adc-polish")
                records[(label, record["seed"])][record["target_id"]] = {**record, "store": store}
    return records


def row_of(rows: dict[tuple[str, int], dict[str, Record]], label: str) -> dict[int, dict[str, Record]]:
    """seed -> target -> record of the row `label`, out of read_records' (label, seed) keys."""
    return {seed: run for (name, seed), run in rows.items() if name == label}


def exact(record: Record | None) -> bool:
    return record is not None and record["result"]["metrics"]["eval/exact_match"]


def hits(runs: list[dict[str, Record]], target: str) -> int:
    return sum(exact(run.get(target)) for run in runs)


def history(record: Record) -> dict[str, list]:
    """The run's stored history: key -> one value per step (or per evaluation, for `eval/` keys)."""
    with open(f"{record['store']}/{record['history_file']}") as file:
        return json.load(file)


def lowest_losses(record: Record) -> list[float]:
    """The run's lowest relaxed loss per step (`loss/target_best`), from its stored history."""
    return history(record)["loss/target_best"]


def lowest_near(losses: list[float], step: int) -> float:
    """The lowest relaxed loss over the ten steps up to `step` (1-based; past the end: the last ten)."""
    end = min(step, len(losses))
    return min(losses[max(0, end - 10):end])


def chance_at(rate: float, k: int) -> float:
    """A target's chance of falling at k times the budget, when it falls in a fraction `rate` of runs at 1x."""
    return 1 - (1 - rate) ** k


def median_lowest(curves: list[list[float]], steps: tuple[int, ...]) -> list[float]:
    """The median over runs of the lowest loss near each of `steps` (10**9: the last ten steps)."""
    return [statistics.median(lowest_near(curve, step) for curve in curves) for step in steps]


def median_text(values: list[float], digits: int) -> str:
    """The median rounded to `digits`, or "none" for no values (a row that inverts everything has no misses)."""
    return f"{statistics.median(values):.{digits}f}" if values else "none"


def row_summary(name: str, records: list[Record]) -> None:
    results = [record["result"] for record in records]
    misses = [result for result in results if not result["metrics"]["eval/exact_match"]]
    wins = [result for result in results if result["metrics"]["eval/exact_match"]]
    print(f"{name}: {len(wins)} of {len(results)}, mean LCS "
          f"{statistics.mean(r['metrics']['eval/lcs_ratio'] for r in results):.2f}, median steps of a miss "
          f"{median_text([r['steps_run'] for r in misses], 1)}, successes: median "
          f"{median_text([r['wall_time_s'] for r in wins], 1)} s and "
          f"{median_text([r['forward_tokens'] for r in wins], 0)} forward tokens, "
          f"{sum(r['metrics']['eval/roundtrip_exact'] for r in wins)} paste")


def screen_runs(store: str, label: str) -> dict[int, dict[str, Record]]:
    """seed -> target -> finished record of the row `label` in `store`; a one-line exit when there is none."""
    if not os.path.exists(f"{store}/results.jsonl"):
        sys.exit(f"hit_rates.py: no bench store at {store!r} (no results.jsonl)")
    screen = {seed: run for (_, seed), run in read_records({store: (label,)}).items()}
    if not screen:
        sys.exit(f"hit_rates.py: no finished run labelled {label!r} in {store!r}")
    return screen


def time_curve(store: str, label: str, rates: dict[str, float]) -> None:
    """A long row's successes by each multiple of 180 s, per seed, out of the natural set: its own targets plus
    the ones every baseline run inverts (rate 1), against what the baseline's `rates` predict at that budget."""
    screen, budget = screen_runs(store, label), json.load(open(f"{store}/spec.json"))["budget"]["seconds"]
    sure = [target for target, rate in rates.items() if rate == 1]
    for seed, run in sorted(screen.items()):
        times = {t: record["result"]["wall_time_s"] for t, record in run.items() if exact(record)}
        print(f"seed {seed}, {len(run)} targets (+ {len(sure)} sure), seconds to success: "
              + ", ".join(f"{t} {round(times[t])}" for t in sorted(times, key=times.get)))
        for k in range(1, round(budget / 180) + 1):
            count = sum(seconds <= 180 * k for seconds in times.values())
            predicted = sum(chance_at(rates[t], k) for t in run)
            print(f"  by {180 * k} s: {count + len(sure)} of {len(run) + len(sure)} "
                  f"(constant rates predict {predicted + len(sure):.1f})")
    curves = [lowest_losses(record) for run in screen.values() for record in run.values() if not exact(record)]
    if curves:
        marks = (100, 200, 400, 600, 10**9)
        print(f"{len(curves)} misses, median lowest loss near step " + ", ".join(map(str, marks[:-1])) + " and the "
              "last: " + ", ".join(f"{value:.2f}" for value in median_lowest(curves, marks))
              + f"; median steps {statistics.median(len(c) for c in curves)}")


def compare_screen(store: str, label: str, baseline: dict[tuple[str, int], dict[str, Record]],
                   rates: dict[str, float]) -> None:
    """The screen row against adc-polish on the same targets and seeds (and what the baseline's `rates` predict)."""
    screen = screen_runs(store, label)
    preset = {seed: baseline[("adc-polish", seed)] for seed in screen}
    targets = sorted({target for run in screen.values() for target in run})
    print(f"{label} against adc-polish, seeds {sorted(screen)} (a seed's run may still be going)")
    for target in targets:
        seconds = [round(run[target]["result"]["wall_time_s"]) for run in screen.values() if exact(run.get(target))]
        print(f"{target}: {hits(list(screen.values()), target)} of {len(screen)} "
              f"(adc-polish {hits(list(preset.values()), target)} of {len(preset)}), seconds to success {seconds}")
    for seed in sorted(screen):
        print(f"seed {seed}: {sum(map(exact, screen[seed].values()))} against "
              f"{sum(exact(preset[seed].get(t)) for t in screen[seed])}")
    pairs = [(screen[s][t], preset[s][t]) for s in screen for t in screen[s]]
    print(f"the baseline's rates predict {sum(rates[t] for s in screen for t in screen[s]):.1f} successes")
    row_summary(label, [pair[0] for pair in pairs])
    row_summary("adc-polish", [pair[1] for pair in pairs])
    missed = [pair for pair in pairs if not exact(pair[0]) and not exact(pair[1])]
    if not missed:
        print("no run that both miss")
        return
    ends = [median_lowest([lowest_losses(pair[i]) for pair in missed], (10**9,))[0] for i in (0, 1)]
    print(f"{len(missed)} runs both miss: lowest loss of the last ten steps, median {ends[0]:.2f} "
          f"against {ends[1]:.2f}")
    medians = median_lowest([lowest_losses(pair[1]) for pair in missed], (50, 100, 150, 10**9))
    print("adc-polish on those runs, median lowest loss near step 50, 100, 150 and the last: "
          + ", ".join(f"{value:.2f}" for value in medians))


def versus(store: str, label: str, other: str, seeds: str | None = None) -> None:
    """A screen row against any row of the baseline stores (`gcg-fast` too) on the (target, seed) runs of the
    screen: successes per seed, and the medians of seconds and forward tokens on the runs both invert. The store
    `baseline` reads `label` from the baseline stores too; `other` given as STORE:LABEL is a row of another screen's
    store (a screen run beside it); `seeds` ("0,1,2") keeps only those seeds."""
    rows = read_records({baseline_store: (label, other, "adc-s10-polish") for baseline_store in ROWS})
    theirs = screen_runs(*other.split(":", 1)) if ":" in other else row_of(rows, other)
    screen = row_of(rows, label) if store == "baseline" else screen_runs(store, label)
    if seeds is not None:
        if not all(part.strip().isdigit() for part in seeds.split(",")):
            sys.exit(f"hit_rates.py: SEEDS must be seeds separated by commas, such as 0,1,2; got {seeds!r}")
        screen = {seed: run for seed, run in screen.items() if seed in {int(s) for s in seeds.split(",")}}
    shared = [(screen[seed][t]["result"], theirs[seed][t]["result"]) for seed in screen.keys() & theirs.keys()
              for t in screen[seed] if exact(screen[seed][t]) and exact(theirs[seed].get(t))]
    for seed in sorted(screen.keys() & theirs.keys()):
        print(f"seed {seed}, {len(screen[seed])} targets: {sum(map(exact, screen[seed].values()))} against "
              f"{sum(exact(theirs[seed].get(t)) for t in screen[seed])}")
    if not shared:
        sys.exit(f"hit_rates.py: no run that both {label!r} and {other!r} invert")
    seconds = [statistics.median(pair[i]["wall_time_s"] for pair in shared) for i in (0, 1)]
    tokens = [statistics.median(pair[i]["forward_tokens"] for pair in shared) for i in (0, 1)]
    print(f"{len(shared)} runs both invert: median s {seconds[0]:.1f} against {seconds[1]:.1f} "
          f"({seconds[0] / seconds[1]:.2f}x), forward tokens {tokens[0]:.0f} against {tokens[1]:.0f} "
          f"({tokens[0] / tokens[1]:.2f}x)")


def seconds_to_success(record: Record | None, budget: float) -> float:
    """A run's seconds to success; a success judged just past the budget (the last judge) counts at the budget;
    inf for a miss."""
    return min(record["result"]["wall_time_s"], budget) if exact(record) else float("inf")


def portfolio(label: str, other: str, store: str | None = None, budget: float = 180.0) -> None:
    """A budget split between two rows, from their runs: `label` (a baseline row) for its first x s, then `other`
    (a baseline row, or a row of the screen `store`) for the rest, per seed both ran. `label` given as
    STORE:LABEL is a row of that store (two rows run side by side on one day). A row's first x s are its run at
    an x s budget (the budget only stops a run), so a target falls when either part reaches it in its share; the
    second model load is not counted. Only the targets both rows ran are counted."""
    rows = read_records({baseline_store: (label, other, "adc-s10-polish") for baseline_store in ROWS})
    first = screen_runs(*label.split(":", 1)) if ":" in label else row_of(rows, label)
    second = screen_runs(store, other) if store is not None else row_of(rows, other)
    seeds = sorted(first.keys() & second.keys())
    if not seeds:
        sys.exit(f"hit_rates.py: no seed that both {label!r} and {other!r} ran")
    print(f"{label} for x s, then {other} for {budget:.0f} - x s; seeds {seeds}")
    for share in range(0, int(budget) + 1, 15):
        counts = [sum(seconds_to_success(first[seed].get(t), budget) <= share
                      or seconds_to_success(second[seed].get(t), budget) <= budget - share
                      for t in first[seed].keys() & second[seed].keys()) for seed in seeds]
        print(f"x = {share:3d} s: {counts}, mean {statistics.mean(counts):.1f}")


def main() -> None:
    baseline = read_records(ROWS)
    runs = list(baseline.values())
    targets = sorted({target for run in runs for target in run})
    rates = {target: hits(runs, target) / len(runs) for target in targets}
    print(f"{len(runs)} runs: " + ", ".join(f"{label} seed {seed}" for label, seed in sorted(baseline)))
    if len(sys.argv) == 4 and sys.argv[1] == "--screen":
        compare_screen(sys.argv[2], sys.argv[3], baseline, rates)
        return
    if len(sys.argv) in (5, 6) and sys.argv[1] == "--versus":
        versus(*sys.argv[2:])
        return
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--portfolio":
        portfolio(*sys.argv[2:])
        return
    if len(sys.argv) == 4 and sys.argv[1] == "--curve":
        time_curve(sys.argv[2], sys.argv[3], rates)
        return
    for target in targets:
        seconds = sorted(round(run[target]["result"]["wall_time_s"]) for run in runs if exact(run.get(target)))
        print(f"{target}: {round(rates[target] * len(runs))} of {len(runs)}, seconds to success {seconds}")
    for k in (1, 2, 4):
        print(f"expected targets a run at {k}x the budget: {sum(chance_at(p, k) for p in rates.values()):.1f}")
    if len(sys.argv) == 3:
        known = sorted({label for label, _ in baseline})
        for label in sys.argv[1:]:
            if label not in known:
                sys.exit(f"hit_rates.py: no row labelled {label!r} among the baseline rows {known}")
        a, b = (row_of(baseline, label) for label in sys.argv[1:])
        shared = [(a[seed][t]["result"], b[seed][t]["result"]) for seed in a.keys() & b.keys() for t in a[seed]
                  if exact(a[seed][t]) and exact(b[seed].get(t))]
        seconds = [statistics.median(pair[i]["wall_time_s"] for pair in shared) for i in (0, 1)]
        tokens = [statistics.median(pair[i]["forward_tokens"] for pair in shared) for i in (0, 1)]
        print(f"{len(shared)} runs both invert: median s {seconds[0]:.1f} against {seconds[1]:.1f}, "
              f"forward tokens {tokens[0]:.0f} against {tokens[1]:.0f}")


if __name__ == "__main__":
    main()
