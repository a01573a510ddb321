"""Restarting the runs that look stuck, simulated from stored `adc-polish` runs (docs/benchmarks.md §6).

A policy: at `check` seconds a run that has not succeeded is judged by a predictor (the lowest relaxed loss it has
reached, or the judge's best LCS so far); when that looks bad, the run stops and a fresh run of the same target
gets the rest of the 180 s. The budget only stops a run, so a stored run's first x s are its run at an x s budget,
and the chance that the fresh run succeeds in 180 - check s is the fraction of the target's other stored runs that
succeed by then. The model load and the restart's few milliseconds are not counted, which flatters restarts.
The targets are those of the 720 s runs (the 14 uncertain ones); every stored run of a target is pooled, so the
score is the expected number of the 14 inverted by one run.

Usage: python bench/screens/restart_policy.py [STORE LABEL]  (adds a screen's preset row to the pool, e.g.
       bench/results/screen-natural-levers-26 adc-polish)
"""

import bisect
import statistics
import sys

from hit_rates import exact, history, read_records, seconds_to_success

BUDGET = 180.0
POOL = {"bench/results/natural": ("adc-s10-polish",), "bench/results/natural-seeds": ("adc-polish",),
        "bench/results/screen-budget-720": ("adc-polish-720s",),
        "bench/results/screen-levers-25": ("adc-polish-rerun",)}
CHECKS = (30, 45, 60, 90, 120)
LOSS_LIMITS = (0.8, 1.0, 1.2, 1.4, 1.6, 2.0)  # restart when the lowest loss so far is above
LCS_LIMITS = (0.3, 0.4, 0.5, 0.6, 0.8, 1.0)  # restart when the judge's best LCS so far is below


def step_seconds(history: dict) -> list[float]:
    """Seconds at the end of each step, interpolated between the judge's timed evaluations (every 10 steps)."""
    steps, seconds = [0] + history["eval/step"], [0.0] + history["eval/seconds"]
    rate = seconds[-1] / max(steps[-1], 1)
    times = []
    for step in range(1, len(history["loss/target_best"]) + 1):
        i = bisect.bisect_left(steps, step)
        if i == len(steps):
            times.append(seconds[-1] + rate * (step - steps[-1]))
        else:
            times.append(seconds[i - 1] + (seconds[i] - seconds[i - 1]) * (step - steps[i - 1])
                         / max(steps[i] - steps[i - 1], 1))
    return times


def run_summary(record: dict) -> dict:
    keys = history(record)
    return {"success": seconds_to_success(record, float("inf")) if exact(record) else float("inf"),
            "losses": list(zip(step_seconds(keys), keys["loss/target_best"])),
            "lcs": list(zip(keys["eval/seconds"], keys["eval/lcs_ratio"]))}


def lowest_loss(run: dict, check: float) -> float:
    return min((loss for seconds, loss in run["losses"] if seconds <= check), default=float("inf"))


def best_lcs(run: dict, check: float) -> float:
    return max((lcs for seconds, lcs in run["lcs"] if seconds <= check), default=0.0)


def expected_hits(pool: dict[str, list[dict]], check: float, restart) -> tuple[float, float]:
    """Expected targets inverted by one run under the policy, and the share of runs it restarts."""
    total, restarts = 0.0, 0
    for runs in pool.values():
        for run in runs:
            if run["success"] <= check or not restart(run, check):
                total += (run["success"] <= BUDGET) / len(runs)
                continue
            restarts += 1
            others = [other for other in runs if other is not run]
            total += statistics.mean(other["success"] <= BUDGET - check for other in others) / len(runs)
    return total, restarts / sum(len(runs) for runs in pool.values())


def main() -> None:
    sources = dict(POOL)
    if len(sys.argv) == 3:
        sources[sys.argv[1]] = (sys.argv[2],)
    records = read_records(sources)
    print("runs: " + ", ".join(f"{label} seed {seed}" for label, seed in sorted(records)))
    targets = sorted({t for (label, _), run in records.items() if label == "adc-polish-720s" for t in run})
    pool = {t: [run_summary(run[t]) for run in records.values() if t in run] for t in targets}
    print(f"{len(targets)} targets, {min(map(len, pool.values()))}-{max(map(len, pool.values()))} runs each")
    never, _ = expected_hits(pool, BUDGET, lambda run, check: False)
    print(f"no restart: {never:.2f} of {len(targets)}")
    runs = [run for runs in pool.values() for run in runs]
    for check in CHECKS:
        late = [run for run in runs if check < run["success"] <= BUDGET]
        missed = [run for run in runs if run["success"] > BUDGET]
        print(f"at {check} s, runs that succeed later / miss: median lowest loss "
              f"{statistics.median(lowest_loss(r, check) for r in late):.2f} / "
              f"{statistics.median(lowest_loss(r, check) for r in missed):.2f}, median best LCS "
              f"{statistics.median(best_lcs(r, check) for r in late):.2f} / "
              f"{statistics.median(best_lcs(r, check) for r in missed):.2f} ({len(late)} / {len(missed)} runs)")
    for name, limits, restart in (
            ("lowest loss above", LOSS_LIMITS, lambda limit: lambda run, check: lowest_loss(run, check) > limit),
            ("best LCS below", LCS_LIMITS, lambda limit: lambda run, check: best_lcs(run, check) < limit)):
        print(f"\nrestart when the {name} the limit at the check: expected hits (share restarted)")
        print("| check s | " + " | ".join(str(limit) for limit in limits) + " |")
        for check in CHECKS:
            cells = [expected_hits(pool, check, restart(limit)) for limit in limits]
            print(f"| {check} | " + " | ".join(f"{hits:.2f} ({share:.2f})" for hits, share in cells) + " |")


if __name__ == "__main__":
    main()
