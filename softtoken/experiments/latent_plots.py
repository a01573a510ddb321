"""PNG figures of a latent sweep, drawn from `latent_report.summarize_latent` (so from the store only):

- accuracy_vs_k.png: accuracy of each `series` against its flat latent count k (± stderr over seeds), with
  horizontal lines for the CoT and No-CoT entries;
- rl_latent_steps_by_difficulty.png: latent steps per difficulty S before and after RL, one panel per
  GRPO entry.
Both use the entries' own (`val`) evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from softtoken.experiments.latent_spec import MAIN_EVAL
from softtoken.experiments.plots import pyplot, save_figures
from softtoken.experiments.report import Stat

BASELINES = {"cot": "--", "no-cot": ":"}  # mode of an SFT entry drawn as a horizontal line -> line style


def _error(stat: Stat) -> float:
    return 0.0 if math.isnan(stat.stderr) else stat.stderr


def accuracy_vs_k_figure(summary: Mapping[str, Mapping[str, Any]]):
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    series: dict[str, list[tuple[int, Stat]]] = {}
    for s in summary.values():
        if s["series"] is not None and MAIN_EVAL in s["evaluations"]:
            series.setdefault(s["series"], []).append((s["k"], s["evaluations"][MAIN_EVAL]["accuracy"]))
    for name, points in series.items():
        points.sort(key=lambda point: point[0])
        ax.errorbar([k for k, _ in points], [stat.mean for _, stat in points],
                    yerr=[_error(stat) for _, stat in points], marker="o", capsize=3, label=name)
    for label, s in summary.items():
        if s["mode"] in BASELINES and s["kind"] == "sft" and MAIN_EVAL in s["evaluations"]:
            stat = s["evaluations"][MAIN_EVAL]["accuracy"]
            ax.axhline(stat.mean, linestyle=BASELINES[s["mode"]], color="grey", label=f"{label}: {stat.text(3)}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("latent steps k (flat schedule)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize="small")
    return fig


def rl_steps_by_difficulty_figure(grpo: Mapping[str, Mapping[str, Any]]):
    """`grpo`: the summary entries that hold latent before/after evaluations."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, len(grpo), figsize=(4.5 * len(grpo), 3.5), squeeze=False)
    for ax, (label, s) in zip(axes[0], grpo.items()):
        for phase, part, style in (("before RL", "start", "--"), ("after RL", "evaluations", "-")):
            by_steps = s[part][MAIN_EVAL]["by_steps"]
            steps = sorted(by_steps)
            ax.errorbar(steps, [by_steps[k]["latent_steps"].mean for k in steps],
                        yerr=[_error(by_steps[k]["latent_steps"]) for k in steps], linestyle=style, marker="o",
                        capsize=3, label=phase)
        ax.set_title(label, fontsize="medium")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("difficulty S (reasoning steps)")
        ax.set_ylabel("latent steps")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="small")
    return fig


def latent_figures(summary: Mapping[str, Mapping[str, Any]]) -> Iterator[tuple[str, str, Any]]:
    """(caption, file name, figure) for every figure the data supports."""
    if any(s["series"] is not None for s in summary.values()):
        yield ("accuracy vs latent count k (mean ± stderr over seeds; grey: baselines)", "accuracy_vs_k.png",
               accuracy_vs_k_figure(summary))
    grpo = {label: s for label, s in summary.items()
            if all(MAIN_EVAL in s[part] and s[part][MAIN_EVAL]["latent_thinking"] for part in ("start", "evaluations"))}
    if grpo:
        yield ("latent steps by difficulty before and after RL (mean ± stderr over seeds)",
               "rl_latent_steps_by_difficulty.png", rl_steps_by_difficulty_figure(grpo))


def write_latent_figures(summary: Mapping[str, Mapping[str, Any]], out_dir: Path) -> dict[str, Path]:
    """Write every figure the data supports; return {caption: path}."""
    return save_figures(latent_figures(summary), out_dir)
