"""Aggregate a latent sweep's store into tables (markdown, HTML, LaTeX) and figures.

Counting rules:
- one run is (entry, seed); every number is the mean over seeds of the runs' values, ± the standard
  error of those per-seed values (shown with >= 2 seeds), as the inversion report does over targets;
- difficulty S is the number of reasoning steps of a problem (len(row["steps"])), the per-S numbers are
  those the run stored for each evaluation (softtoken.latent.runs.by_difficulty);
- "before" of a GRPO run is its start model evaluated as loaded for RL, stored with the run;
- only the runs of the spec the directory was last run with count (spec.json lists their keys); records
  of entries changed since are counted in a note. Failed runs are listed, not scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from softtoken.experiments.latent_spec import MAIN_EVAL
from softtoken.experiments.report import (
    Block,
    Stat,
    closing_blocks,
    latex_escape,
    over_seeds,
    write_report_files,
)
from softtoken.experiments.store import RunStore, saved_spec

NOTE = ("Mean ± standard error over seeds (one run per entry and seed). Accuracy: greedy exact answer. "
        "Latent steps: <|CONTINUE|> count k. Reasoning length: k + 2 (<START> and <|STOP|>) in latent "
        "evaluations, the CoT tokens before the answer otherwise. S: the number of reasoning steps of a problem.")


@dataclass(frozen=True, kw_only=True)
class LatentRow:
    """One finished run: what the report reads from its record."""

    key: str
    label: str
    seed: int
    kind: str  # "sft" or "grpo"
    mode: str  # "cot", "no-cot" or "latent"
    series: str | None
    k: int | None
    parent: str | None
    steps: int
    wall_s: float
    evaluations: dict[str, dict[str, Any]]  # name -> evaluation record (runs.evaluation_record)
    start: dict[str, dict[str, Any]]  # GRPO: the same for the start model; {} for SFT


def _row(record: dict[str, Any]) -> LatentRow:
    result = record["result"]
    return LatentRow(key=record["key"], label=record["label"], seed=int(record["seed"]), kind=record["kind"],
                     mode=record["mode"], series=record.get("series"), k=record.get("k"), parent=record.get("from"),
                     steps=int(result["steps"]), wall_s=float(result["wall_s"]), evaluations=result["evaluations"],
                     start=result.get("start") or {})


def load_latent_runs(store: RunStore) -> tuple[list[LatentRow], list[dict[str, Any]], int]:
    """(rows of ok runs, failed records, records left out) of the spec's keys, in spec order."""
    keys = saved_spec(store.root).get("keys")
    latest = store.latest()
    order = keys if keys is not None else list(latest)
    chosen = [latest[key] for key in order if key in latest]
    rows = [_row(r) for r in chosen if r["status"] == "ok"]
    return rows, [r for r in chosen if r["status"] != "ok"], len(latest) - len(chosen)


# ----------------------------------------------------------------------------- statistics
def evaluation_stats(runs: Sequence[LatentRow], name: str, part: str = "evaluations") -> dict[str, Any] | None:
    """Accuracy, latent steps and length over seeds, overall and by S, of evaluation `name` (of the final
    model, or with part="start" of a GRPO run's start model); None when no run has it."""
    having = [r for r in runs if name in getattr(r, part)]
    if not having:
        return None

    def record(run: LatentRow) -> dict[str, Any]:
        return getattr(run, part)[name]

    latent = bool(record(having[0])["latent_thinking"])
    by_steps = {}
    for s in sorted({s for r in having for s in record(r)["by_steps"]}, key=int):
        present = [r for r in having if s in record(r)["by_steps"]]
        by_steps[int(s)] = {
            "accuracy": over_seeds(present, lambda r, s=s: record(r)["by_steps"][s]["accuracy"]),
            "latent_steps": over_seeds(present, lambda r, s=s: record(r)["by_steps"][s]["latent_steps"])
            if latent else None,
        }
    return {"latent_thinking": latent, "accuracy": over_seeds(having, lambda r: record(r)["accuracy"]),
            "latent_steps": over_seeds(having, lambda r: record(r)["latent_steps"]),
            "length": over_seeds(having, lambda r: record(r)["length"]), "by_steps": by_steps}


def summarize_latent(rows: Sequence[LatentRow]) -> dict[str, dict[str, Any]]:
    """Per label (in row order): entry facts, seeds, training steps and wall time, and per evaluation name
    the stats of the final model ("evaluations") and, for GRPO, of the start model ("start")."""
    labels = list(dict.fromkeys(r.label for r in rows))
    names = list(dict.fromkeys(name for r in rows for name in r.evaluations))
    summary = {}
    for label in labels:
        runs = [r for r in rows if r.label == label]
        first = runs[0]
        summary[label] = {
            "kind": first.kind, "mode": first.mode, "series": first.series, "k": first.k, "from": first.parent,
            "seeds": sorted(r.seed for r in runs), "steps": over_seeds(runs, lambda r: float(r.steps)),
            "wall_s": over_seeds(runs, lambda r: r.wall_s),
            "evaluations": {n: s for n in names if (s := evaluation_stats(runs, n)) is not None},
            "start": {n: s for n in names if (s := evaluation_stats(runs, n, "start")) is not None},
        }
    return summary


# ----------------------------------------------------------------------------- tables
def _text(stat: Stat | None, digits: int) -> str:
    return "–" if stat is None else stat.text(digits)


def runs_table(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["run", "kind", "answers with", "from", "seeds", "training steps", "wall s"]
    rows = [[label, s["kind"], s["mode"], s["from"] or "–", str(len(s["seeds"])), _text(s["steps"], 0),
             _text(s["wall_s"], 1)] for label, s in summary.items()]
    return headers, rows


def _eval_names(summary: dict[str, dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(n for s in summary.values() for n in s["evaluations"]))
    return sorted(names, key=lambda n: n != MAIN_EVAL)  # the entries' own `val` first


def overall_table(summary: dict[str, dict[str, Any]], name: str) -> tuple[list[str], list[list[str]]]:
    headers = ["run", "accuracy", "latent steps", "reasoning length"]
    rows = [[label, e["accuracy"].text(3), e["latent_steps"].text(2), e["length"].text(2)]
            for label, s in summary.items() if (e := s["evaluations"].get(name))]
    return headers, rows


def by_steps_table(summary: dict[str, dict[str, Any]], name: str, metric: str, part: str = "evaluations"
                   ) -> tuple[list[str], list[list[str]]] | None:
    """Rows of runs whose evaluation `name` has `metric` per S (latent steps: latent evaluations only)."""
    chosen = {(label,): e for label, s in summary.items() if (e := s[part].get(name))}
    table = _per_difficulty(chosen, metric, ["run"])
    return table if table[1] else None


def _per_difficulty(evaluations: dict[tuple[str, ...], dict[str, Any]], metric: str, heads: list[str]
                    ) -> tuple[list[str], list[list[str]]]:
    """One row per (row cells) -> evaluation with `metric` per S; latent steps only for latent evaluations."""
    chosen = {cells: e for cells, e in evaluations.items() if metric == "accuracy" or e["latent_thinking"]}
    steps = sorted({k for e in chosen.values() for k in e["by_steps"]})
    digits = 3 if metric == "accuracy" else 2
    rows = [list(cells) + [_text(e["by_steps"][k][metric], digits) if k in e["by_steps"] else "–" for k in steps]
            for cells, e in chosen.items()]
    return heads + [f"S={k}" for k in steps], rows


def rl_tables(summary: dict[str, dict[str, Any]], name: str) -> list[Block]:
    """Before/after RL of evaluation `name`: the overall numbers, and latent steps and accuracy by S."""
    grpo = {label: s for label, s in summary.items() if name in s["start"] and name in s["evaluations"]}
    if not grpo:
        return []
    headers = ["run", "from", "accuracy before", "after", "latent steps before", "after", "reasoning length before",
               "after"]
    rows = []
    for label, s in grpo.items():
        before, after = s["start"][name], s["evaluations"][name]
        rows.append([label, s["from"] or "–", before["accuracy"].text(3), after["accuracy"].text(3),
                     before["latent_steps"].text(2), after["latent_steps"].text(2), before["length"].text(2),
                     after["length"].text(2)])
    blocks: list[Block] = [("h", 3, f"Before / after RL ({name})"), ("table", headers, rows)]
    phases = {(label, phase): s[part][name] for label, s in grpo.items()
              for phase, part in (("before", "start"), ("after", "evaluations"))}
    for metric, caption in (("latent_steps", "Latent steps"), ("accuracy", "Accuracy")):
        table = _per_difficulty(phases, metric, ["run", "phase"])
        if table[1]:
            blocks += [("h", 3, f"{caption} by difficulty S, before / after RL ({name})"), ("table", *table)]
    return blocks


def latent_blocks(title: str, summary: dict, failed: list[dict], left_out: int, figures: dict[str, str]) -> list[Block]:
    blocks: list[Block] = [("h", 1, title), ("p", NOTE), ("h", 2, "Runs"), ("table", *runs_table(summary))]
    for name in _eval_names(summary):
        blocks += [("h", 2, f"Evaluation: {name}"), ("table", *overall_table(summary, name))]
        for metric, caption in (("accuracy", "Accuracy"), ("latent_steps", "Latent steps")):
            table = by_steps_table(summary, name, metric)
            if table:
                blocks += [("h", 3, f"{caption} by difficulty S ({name})"), ("table", *table)]
        blocks += rl_tables(summary, name)
    blocks += closing_blocks(figures, failed)
    if left_out:
        blocks.append(("p", f"{left_out} stored records belong to entries changed since (or no longer in the "
                            "spec) and are not counted."))
    return blocks


def latent_latex(summary: dict[str, dict[str, Any]]) -> str:
    """The entries' own (`val`) evaluation: accuracy, latent steps and reasoning length."""

    def cell(stat: Stat, digits: int) -> str:
        return stat.text(digits).replace("±", "$\\pm$")

    lines = ["\\begin{table}[t]", "\\centering", "\\begin{tabular}{lrrr}", "\\toprule",
             "Run & Accuracy & Latent steps & Reasoning length \\\\", "\\midrule"]
    for label, s in summary.items():
        e = s["evaluations"].get(MAIN_EVAL)
        if e:
            lines.append(" & ".join([latex_escape(label), cell(e["accuracy"], 3), cell(e["latent_steps"], 2),
                                     cell(e["length"], 2)]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}",
              "\\caption{Greedy accuracy, latent steps and reasoning length on the validation split; mean $\\pm$ "
              "standard error over seeds.}", "\\end{table}"]
    return "\n".join(lines) + "\n"


def write_latent_report(store: RunStore, out_dir: Path, *, figures: bool = True) -> dict[str, Path]:
    """Write report.md, report.html, table.tex and figures/*.png for a latent sweep; return their paths."""
    from softtoken.experiments.latent_plots import write_latent_figures

    rows, failed, left_out = load_latent_runs(store)
    summary = summarize_latent(rows)
    pictures = {}
    if figures and rows:
        pictures = {alt: str(path.relative_to(out_dir)) for alt, path in
                    write_latent_figures(summary, out_dir / "figures").items()}
    title = f"Report: {store.root.name}"
    blocks = latent_blocks(title, summary, failed, left_out, pictures)
    return write_report_files(out_dir, title, blocks, latent_latex(summary))
