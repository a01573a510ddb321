"""Benchmark harness: several methods on the same targets under the same per-target budget, one table.

A bench spec is a sweep spec whose method entries carry no budget of their own: every method gets the
spec's budget (wall-clock seconds and/or steps) on every target. Runs go through the sweep machinery,
so a bench resumes after a kill, and the comparison is written to OUT/bench.md next to the full report.
"""

from __future__ import annotations

import logging
import math
import platform
import time
from dataclasses import replace
from pathlib import Path

from softtoken.experiments.report import RunRow, load_runs, summarize, to_markdown
from softtoken.experiments.spec import SpecError, SweepSpec
from softtoken.experiments.store import RunStore
from softtoken.experiments.sweep import run_sweep

logger = logging.getLogger(__name__)


def bench_spec(spec: SweepSpec, *, seconds: float | None = None, steps: int | None = None,
               limit_targets: int | None = None, labels: list[str] | None = None,
               seeds: list[int] | None = None, targets: list[str] | None = None) -> SweepSpec:
    """Apply command-line reductions and check that every method shares the spec's budget."""
    if seeds:
        spec = _only_seeds(spec, seeds)
    if targets:
        spec = _only_targets(spec, targets)
    if labels:
        unknown = sorted(set(labels) - {m.label for m in spec.methods})
        if unknown:
            raise SpecError([f"--methods: unknown label(s) {unknown}; labels: {[m.label for m in spec.methods]}"])
        spec = replace(spec, methods=tuple(m for m in spec.methods if m.label in labels))
    own = [m.label for m in spec.methods if m.budget is not None]
    if own:
        raise SpecError([f"bench: method entries may not set their own budget (all share the spec's): {own}"])
    if seconds is not None or steps is not None:
        budget = spec.budget
        spec = replace(spec, budget=replace(budget, steps=steps if steps is not None else budget.steps,
                                            seconds=seconds if seconds is not None else budget.seconds))
    if spec.budget.seconds is None and spec.budget.steps is None and spec.budget.forward_tokens is None:
        raise SpecError(["bench: the spec needs a budget (seconds, steps and/or forward_tokens) shared by all methods"])
    if limit_targets is not None:
        spec = replace(spec, dataset=replace(spec.dataset, limit=limit_targets))
    return spec


def _only_seeds(spec: SweepSpec, seeds: list[int]) -> SweepSpec:
    """The spec's runs with those seeds only (a long bench run seed by seed, its rows interleaved with another's)."""
    own = {m.label: [s for s in (m.seeds or spec.seeds) if s in seeds] for m in spec.methods}
    known = set(spec.seeds).union(*(m.seeds or () for m in spec.methods))
    if not set(seeds) <= known:
        raise SpecError([f"--seeds: unknown seed(s) {sorted(set(seeds) - known)}; the spec's seeds: {sorted(known)}"])
    # Every kept method names its seeds, so the spec's own only matter when some of them were chosen.
    return replace(spec, seeds=tuple(s for s in spec.seeds if s in seeds) or spec.seeds,
                   methods=tuple(replace(m, seeds=tuple(own[m.label])) for m in spec.methods if own[m.label]))


def _only_targets(spec: SweepSpec, targets: list[str]) -> SweepSpec:
    """The spec's runs on those target ids only (a rerun of some targets, e.g. one seed's misses at a new budget).
    Ids outside a spec's own `dataset.ids` are refused here; the others are checked when the targets load."""
    if spec.dataset.ids is not None:
        unknown = [t for t in targets if t not in spec.dataset.ids]
        if unknown:
            raise SpecError([f"--targets: unknown target id(s) {unknown}; the spec's ids: {list(spec.dataset.ids)}"])
    return replace(spec, dataset=replace(spec.dataset, ids=tuple(dict.fromkeys(targets))))


def comparison_blocks(spec: SweepSpec, rows: list[RunRow], failed: int) -> list[tuple]:
    summary = summarize(rows)
    budget = spec.budget
    headers = ["method", "runs", "success", "LCS (best)", "token acc.", "time to success s (median)",
               "fwd tokens to success (median)", "mean wall s", "mean steps"]
    table = []
    for label, s in summary.items():
        runs = [r for r in rows if r.label == label]
        table.append([label, str(s["n"]), s["success"].text(2), s["lcs"].text(2), s["token_accuracy"].text(2),
                      _num(s["time_to_success"]), _num(s["compute_to_success"], 0), _num(s["wall_time"]),
                      _num(sum(r.steps_run for r in runs) / len(runs), 0)])
    targets = sorted({r.target_id for r in rows})
    per_target = [[t] + [_lcs_cell(rows, label, t) for label in summary] for t in targets]
    return [
        ("h", 1, f"Benchmark: {spec.name}"),
        ("p", (f"Budget per target per method: seconds={budget.seconds}, steps={budget.steps}, "
               f"forward tokens={budget.forward_tokens}; prompt length "
               f"{spec.prompt_length}; model {spec.model or 'embedded default'}; {len(targets)} targets; "
               f"failed runs: {failed}. Host: {platform.node()} ({platform.machine()}), "
               f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.")),
        ("table", headers, table),
        ("h", 2, "LCS ratio of the best prompt per target (mean over seeds; * = exact match in every seed)"),
        ("table", ["target"] + list(summary), per_target),
    ]


def _num(value: float, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _lcs_cell(rows: list[RunRow], label: str, target: str) -> str:
    runs = [r for r in rows if r.label == label and r.target_id == target]
    if not runs:
        return "–"
    mean = sum(r.lcs for r in runs) / len(runs)
    return f"{mean:.2f}" + ("*" if all(r.success for r in runs) else "")


def run_bench(spec: SweepSpec, out_dir: str | Path, backend, *, progress: bool = True) -> Path:
    """Run the bench (resuming) and write OUT/bench.md; return its path."""
    out_dir = Path(out_dir)
    run_sweep(spec, out_dir, backend, progress=progress)
    return write_bench_table(spec, out_dir)


def write_bench_table(spec: SweepSpec, out_dir: Path) -> Path:
    rows, failed, _ = load_runs(RunStore(out_dir))
    path = out_dir / "bench.md"
    path.write_text(to_markdown(comparison_blocks(spec, rows, len(failed))), encoding="utf-8")
    return path
