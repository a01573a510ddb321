"""Which machine ran a stored run: the step rates of three fixed presets across every bench store, by working
session (docs/benchmarks.md §6, "Which CPU ran which runs"). The VM can move to another host between sessions and
the stores record no CPU, so a rate that jumps between sessions marks a new host. Per session (runs finished less
than 3 h apart), the median steps a second of the runs whose stored config is exactly `gcg-fast`'s (its
`compute_dtype: auto` scores in bf16 where the CPU has native bf16, float32 elsewhere) and of those whose config is
exactly `adc-polish`'s or `adc-copy`'s (float32 always), over runs of at least 100 s (loading and the first steps
weigh little) in stores that ran one thread a run.

Usage: python bench/screens/step_rates.py            (from the repository root)
"""

import datetime
import statistics
from dataclasses import asdict
from pathlib import Path

from softtoken.experiments.store import RunStore, saved_spec
from softtoken.methods.adc import adc_copy, adc_polish
from softtoken.methods.gcg import gcg_fast

PRESETS = {"gcg-fast": [("gcg", asdict(gcg_fast()))],
           "adc-polish / adc-copy": [("adc", asdict(adc_polish())), ("adc", asdict(adc_copy()))]}
SESSION_GAP_S = 3 * 3600


def preset_of(row: dict) -> str | None:
    """The followed preset whose config the run's stored one matches (fields stored before a field existed are
    compared as far as they go), or None."""
    config = row["result"].get("config", {})
    for name, choices in PRESETS.items():
        for method, fields in choices:
            if row["method"] == method and all(config.get(key, value) == value for key, value in fields.items()):
                return name
    return None


def one_thread_runs() -> list[tuple[float, str, float]]:
    """(finished at, preset, steps a second) of every matching run of at least 100 s, each run key once."""
    runs = []
    for results in sorted(Path("bench/results").glob("*/results.jsonl")):
        spec = saved_spec(results.parent)  # {} for the peer's store, which holds nanoGCG's records
        if not spec or (spec.get("threads_per_run") or 1) != 1:  # null: one thread
            continue
        for row in RunStore(results.parent).latest().values():
            result = row.get("result") or {}
            seconds, steps = result.get("wall_time_s") or 0, result.get("steps_run") or 0
            name = preset_of(row) if row["status"] == "ok" and seconds >= 100 and steps else None
            if name:
                runs.append((row["finished_at"], name, steps / seconds))
    return sorted(runs)


def main() -> None:
    sessions: list[list[tuple[float, str, float]]] = []
    for run in one_thread_runs():
        if not sessions or run[0] - sessions[-1][-1][0] > SESSION_GAP_S:
            sessions.append([])
        sessions[-1].append(run)
    print("| session (UTC) | " + " | ".join(f"`{name}` steps / s (runs)" for name in PRESETS) + " |")
    print("| --- | " + " | ".join("---" for _ in PRESETS) + " |")
    for runs in sessions:
        first, last = (datetime.datetime.fromtimestamp(runs[i][0], datetime.timezone.utc) for i in (0, -1))
        cells = []
        for name in PRESETS:
            rates = [rate for _, preset, rate in runs if preset == name]
            cells.append(f"{statistics.median(rates):.2f} ({len(rates)})" if rates else "–")
        print(f"| {first:%m-%d %H:%M}–{last:%m-%d %H:%M} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
