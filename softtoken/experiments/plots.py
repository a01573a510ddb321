"""PNG figures for reports: LCS by k with stderr bars, and per-step curves (loss, temperature, LCS, gradients).

Curves average over runs with each run's last value carried forward after it stops, so early-stopped
(usually solved) targets stay in the average instead of vanishing from later steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# Gradient diagnostics (methods/diagnostics.py) are logged as e.g. "diag/stgs_grad_variance_max" at "diag_step";
# the paper plots the max variance and the max |bias| over steps.
GRADIENT_FIGURES = (("gradient variance (max over elements)", "_variance_max", "grad_variance.png"),
                    ("gradient bias (max |bias| over elements)", "_bias_abs_max", "grad_bias.png"))


def forward_filled_mean(series: Sequence[Sequence[float]]) -> list[float]:
    """Mean over runs per index, each run padded with its last value up to the longest run."""
    series = [[float(v) for v in s] for s in series if len(s) > 0]
    if not series:
        return []
    length = max(len(s) for s in series)
    padded = [s + [s[-1]] * (length - len(s)) for s in series]
    return [sum(column) / len(column) for column in zip(*padded)]


def _pyplot():
    import matplotlib  # optional extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_lcs_by_k(summary: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    plt = _pyplot()
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
    return _save(fig, plt, path)


def plot_curves(curves: Mapping[str, Sequence[float]], ylabel: str, path: Path, *, steps: Mapping[str, Sequence[int]]
                | None = None, log_y: bool = False) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, values in curves.items():
        x = list(steps[label]) if steps and label in steps else list(range(1, len(values) + 1))
        ax.plot(x[: len(values)], values, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log_y and all(v > 0 for values in curves.values() for v in values):
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    return _save(fig, plt, path)


def _save(fig, plt, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _curve(histories: Mapping[str, list[dict]], key: str) -> dict[str, list[float]]:
    curves = {label: forward_filled_mean([h.get(key, []) for h in runs]) for label, runs in histories.items()}
    return {label: values for label, values in curves.items() if values}


def _longest_steps(histories: Mapping[str, list[dict]], key: str = "eval/step") -> dict[str, list[int]]:
    return {label: max((h.get(key, []) for h in runs), key=len, default=[]) for label, runs in histories.items()}


def _gradient_curves(histories: Mapping[str, list[dict]], suffix: str) -> tuple[dict, dict]:
    """Curves named "label: key" for every history key with `suffix`, stepped by diag_step."""
    curves, steps = {}, {}
    diag_steps = _longest_steps(histories, "diag_step")
    for label, runs in histories.items():
        for key in sorted({k for h in runs for k in h if "grad" in k and k.endswith(suffix)}):
            values = forward_filled_mean([h.get(key, []) for h in runs])
            if values:
                curves[f"{label}: {key}"] = values
                steps[f"{label}: {key}"] = diag_steps[label] or list(range(1, len(values) + 1))
    return curves, steps


def write_figures(summary: Mapping[str, Any], histories: Mapping[str, list[dict]], out_dir: Path) -> dict[str, Path]:
    """Write every figure the data supports; return {caption: path}."""
    figures = {}
    if any(k is not None for s in summary.values() for k in s["by_k"]):
        figures["LCS ratio vs k (mean ± stderr over seeds)"] = plot_lcs_by_k(summary, out_dir / "lcs_by_k.png")
    simple = [("loss", "loss (mean over runs)", "loss.png", True), ("tau_mean", "mean temperature", "tau.png", True)]
    for key, ylabel, name, log_y in simple:
        curves = _curve(histories, key)
        if curves:
            figures[f"{ylabel} per step"] = plot_curves(curves, ylabel, out_dir / name, log_y=log_y)
    lcs = _curve(histories, "eval/lcs_ratio")
    if lcs:
        figures["discrete LCS ratio per evaluation"] = plot_curves(
            lcs, "LCS ratio (discrete prompt)", out_dir / "eval_lcs.png", steps=_longest_steps(histories))
    for caption, suffix, name in GRADIENT_FIGURES:
        curves, steps = _gradient_curves(histories, suffix)
        if curves:
            figures[caption] = plot_curves(curves, caption, out_dir / name, steps=steps, log_y=True)
    return figures
