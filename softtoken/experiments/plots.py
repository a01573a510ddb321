"""PNG figures for reports: LCS by k with stderr bars, and curves of the discrete LCS, the target loss, the
temperature and the gradient diagnostics.

A run's curves come from its result and history (`run_curves`). The LCS curve ends with the final
judgement, so a run that stops before its first `eval_every` still shows; results written before
histories ended with it get the result's LCS at their last step. Each figure averages all runs of a
label (`carried_mean`), early-stopped (usually solved) ones carried at their last value instead of
vanishing from later steps. LCS and loss are drawn against steps and against seconds (methods' steps
differ tenfold in cost), and every loss kind (cross-entropy, margin, ...) gets a panel of its own:
their values are not comparable on one axis.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Points = tuple[list[float], list[float]]  # (x, y), x ascending
AXES = {"step": "step", "seconds": "seconds (wall clock)"}
# Gradient diagnostics (methods/diagnostics.py) are logged as e.g. "diag/stgs_grad_variance_max" at "diag/step";
# the paper plots the max variance and the max |bias| over steps.
GRADIENT_FIGURES = (("gradient variance (max over elements)", "_variance_max", "grad_variance.png"),
                    ("gradient bias (max |bias| over elements)", "_bias_abs_max", "grad_bias.png"))


@dataclass(frozen=True, kw_only=True)
class RunCurves:
    """One run's curves, keyed by (history key, axis); axis is "step" or, for LCS and loss, "seconds"."""

    label: str
    loss_kind: str  # e.g. "crossentropy/mean"; the method name for results that do not say
    series: dict[tuple[str, str], Points]


def run_curves(label: str, result: Mapping[str, Any], history: Mapping[str, Sequence]) -> RunCurves:
    """One run's curves from its result record and history."""
    steps_run, wall = int(result["steps_run"]), float(result["wall_time_s"])
    seconds_at = _clock(history, steps_run, wall)
    steps, seconds, lcs = _evaluations(result, history, seconds_at)
    series = {("eval/lcs_ratio", "step"): (steps, lcs), ("eval/lcs_ratio", "seconds"): (seconds, lcs)}
    loss = [float(v) for v in history.get("loss/target", [])]
    if loss:
        every_step = [float(s) for s in range(1, len(loss) + 1)]  # logged once per step
        series["loss/target", "step"] = (every_step, loss)
        series["loss/target", "seconds"] = ([seconds_at(s) for s in every_step], loss)
    tau = [float(v) for v in history.get("relax/tau_mean", [])]
    if tau:
        series["relax/tau_mean", "step"] = ([float(s) for s in range(1, len(tau) + 1)], tau)
    diag_steps = [float(s) for s in history.get("diag/step", [])]
    for key, values in history.items():
        if key.startswith("diag/") and "grad" in key and len(values) == len(diag_steps) > 0:
            series[key, "step"] = (diag_steps, [float(v) for v in values])
    kind = result["metrics"].get("loss/kind") or result["method"]
    return RunCurves(label=label, loss_kind=str(kind), series=series)


def _evaluations(result: Mapping[str, Any], history: Mapping[str, Sequence],
                 seconds_at: Callable[[float], float]) -> tuple[list[float], list[float], list[float]]:
    """(steps, seconds, LCS) of every discrete evaluation, the final judgement last."""
    steps = [float(s) for s in history.get("eval/step", [])]
    lcs = [float(v) for v in history.get("eval/lcs_ratio", [])]
    seconds = [float(s) for s in history.get("eval/seconds") or map(seconds_at, steps)]
    final = result["metrics"].get("eval/lcs_ratio")
    if final is not None and (not steps or steps[-1] < result["steps_run"]):  # an older result: no final judgement
        steps.append(float(result["steps_run"]))
        seconds.append(float(result["wall_time_s"]))
        lcs.append(float(final))
    return steps, seconds, lcs


def _clock(history: Mapping[str, Sequence], steps_run: int, wall_time_s: float) -> Callable[[float], float]:
    """Step -> seconds since the run started: linear between the start, each timed evaluation and the end.

    Without `eval/seconds` (older results) this spreads the run's wall time evenly over its steps."""
    knots = sorted([(0.0, 0.0), *zip(history.get("eval/step", []), history.get("eval/seconds", [])),
                    (float(steps_run), wall_time_s)])
    xs, ys = [float(x) for x, _ in knots], [float(y) for _, y in knots]

    def seconds_at(step: float) -> float:
        i = bisect.bisect_right(xs, step)
        if i == len(xs):
            return ys[-1]
        return ys[i - 1] + (ys[i] - ys[i - 1]) * (step - xs[i - 1]) / (xs[i] - xs[i - 1])  # xs[i] > step >= xs[i-1]

    return seconds_at


def carried_mean(runs: Sequence[Points]) -> Points:
    """Mean over all runs at every x any run has, from the first x at which every run has a value on; a
    run keeps its last value after it stops. Every point averages the same runs, so quick solvers, which
    report first, do not make up the start of the curve alone."""
    runs = [(x, y) for x, y in runs if len(x) > 0]
    if not runs:
        return [], []
    start = max(x[0] for x, _ in runs)
    grid = sorted({v for x, _ in runs for v in x if v >= start})
    means = [sum(y[bisect.bisect_right(x, at) - 1] for x, y in runs) / len(runs) for at in grid]
    return grid, means


def mean_curves(runs: Sequence[RunCurves], key: str, axis: str) -> dict[str, Points]:
    """{label: carried mean of `key` on `axis`} for the labels whose runs have it, in first-seen order."""
    by_label: dict[str, list[Points]] = {}
    for run in runs:
        if (key, axis) in run.series:
            by_label.setdefault(run.label, []).append(run.series[key, axis])
    return {label: carried_mean(points) for label, points in by_label.items()}


def loss_panels(runs: Sequence[RunCurves], axis: str) -> dict[str, dict[str, Points]]:
    """{"loss: <kind>": {label: mean curve}}, one panel per loss kind in first-seen order."""
    panels = {}
    for kind in dict.fromkeys(run.loss_kind for run in runs):
        curves = mean_curves([r for r in runs if r.loss_kind == kind], "loss/target", axis)
        if curves:
            panels[f"loss: {kind}"] = curves
    return panels


# ----------------------------------------------------------------------------- figures
def pyplot():
    import matplotlib  # optional extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def lcs_by_k_figure(summary: Mapping[str, Mapping[str, Any]]):
    plt = pyplot()
    ks = sorted({k for s in summary.values() for k in s["by_k"] if k is not None})
    labels = list(summary)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(ks) + 2), 3.5))
    for i, label in enumerate(labels):
        stats = [summary[label]["by_k"].get(k, {}).get("lcs") for k in ks]
        means = [s.mean if s else 0.0 for s in stats]
        errors = [0.0 if (s is None or math.isnan(s.stderr)) else s.stderr for s in stats]
        ax.bar([j + i * width for j in range(len(ks))], means, width, yerr=errors, capsize=3, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ks))], [f"k={k}" for k in ks])
    ax.set_ylabel("LCS ratio (best prompt)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")
    return fig


def curve_figure(panels: Mapping[str, Mapping[str, Points]], xlabel: str, *, log_y: bool = False,
                 ylim: tuple[float, float] | None = None):
    """One panel per y label, one line per method label; a curve of one point is a marker (a line of one
    point is invisible)."""
    plt = pyplot()
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 3.5 * len(panels)), squeeze=False)
    for ax, (ylabel, curves) in zip(axes[:, 0], panels.items()):
        for label, (x, y) in curves.items():
            ax.plot(x, y, label=label, marker="o" if len(x) == 1 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if log_y and all(v > 0 for _, y in curves.values() for v in y):
            ax.set_yscale("log")
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.legend(fontsize="small")
    return fig


def build_figures(summary: Mapping[str, Any], runs: Sequence[RunCurves]) -> Iterator[tuple[str, str, Any]]:
    """(caption, file name, matplotlib figure) for every figure the data supports."""
    if any(k is not None for s in summary.values() for k in s["by_k"]):
        yield "LCS ratio vs k (mean ± stderr over seeds)", "lcs_by_k.png", lcs_by_k_figure(summary)
    for axis, xlabel in AXES.items():
        suffix = "" if axis == "step" else "_seconds"
        lcs = mean_curves(runs, "eval/lcs_ratio", axis)
        if lcs:
            yield (f"discrete LCS ratio per evaluation, against {xlabel}", f"eval_lcs{suffix}.png",
                   curve_figure({"LCS ratio (discrete prompt)": lcs}, xlabel, ylim=(0, 1.05)))
        losses = loss_panels(runs, axis)
        if losses:
            yield (f"target loss (mean over runs, one panel per loss kind), against {xlabel}", f"loss{suffix}.png",
                   curve_figure(losses, xlabel, log_y=True))
    tau = mean_curves(runs, "relax/tau_mean", "step")
    if tau:
        yield "mean temperature per step", "tau.png", curve_figure({"mean temperature": tau}, "step", log_y=True)
    for caption, suffix, name in GRADIENT_FIGURES:
        keys = sorted({key for run in runs for key, _ in run.series
                       if key.startswith("diag/") and key.endswith(suffix)})
        curves = {f"{label}: {key}": points for key in keys for label, points in mean_curves(runs, key, "step").items()}
        if curves:
            yield caption, name, curve_figure({caption: curves}, "step", log_y=True)


def save_figures(figures: Iterable[tuple[str, str, Any]], out_dir: Path) -> dict[str, Path]:
    """Save (caption, file name, figure) triples as PNGs in out_dir; return {caption: path}."""
    plt = pyplot()
    written = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for caption, name, fig in figures:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written[caption] = out_dir / name
    return written


def write_figures(summary: Mapping[str, Any], runs: Sequence[RunCurves], out_dir: Path) -> dict[str, Path]:
    """Write every figure the data supports; return {caption: path}."""
    return save_figures(build_figures(summary, runs), out_dir)
