"""Aggregate a run directory into a markdown report, an HTML page with the same content and a LaTeX table.

Counting rules (see dlmi-reference.md §8.2 for the bias they avoid):
- every finished run counts, early-stopped ones included; a run's *best* value is the method's returned
  (best discrete prompt) score and its *final* value the last discrete evaluation in its history;
- curves carry an early-stopped run's last value forward instead of dropping the run (plots.py);
- mean ± stderr is over seeds: the mean over targets within each seed, then mean and standard error
  of those per-seed means; failed runs are listed and counted, not scored.
"""

from __future__ import annotations

import html
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from softtoken.experiments.plots import RunCurves, run_curves, write_figures
from softtoken.experiments.store import RunStore, sweep_kind


@dataclass(frozen=True, kw_only=True)
class RunRow:
    """The numbers of one finished run that the report uses."""

    label: str
    seed: int
    target_id: str
    k: int | None
    success: bool
    lcs: float  # best discrete prompt
    token_accuracy: float
    final_lcs: float  # last discrete evaluation
    final_success: bool
    wall_time_s: float
    steps_run: int
    success_step: int | None
    forward_tokens: int
    prompt_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def time_to_success(self) -> float | None:
        """Seconds until the first success, prorated by steps for methods that keep going after it."""
        if self.success_step is None:
            return None
        return self.wall_time_s * min(1.0, self.success_step / max(self.steps_run, 1))

    @property
    def forward_tokens_to_success(self) -> float | None:
        if self.success_step is None:
            return None
        return self.forward_tokens * min(1.0, self.success_step / max(self.steps_run, 1))


def display_label(record: dict[str, Any]) -> str:
    """The method entry's label, plus its grid point when the entry has a grid (each point is its own row)."""
    point = record.get("grid_point") or {}
    if not point:
        return record["label"]
    return record["label"] + " [" + ", ".join(f"{k}={v}" for k, v in sorted(point.items())) + "]"


def _row(record: dict[str, Any], history: dict[str, list]) -> RunRow:
    result = record["result"]
    metrics = result["metrics"]
    best_lcs = float(metrics.get("eval/lcs_ratio", 0.0))
    final_lcs = history.get("eval/lcs_ratio") or [best_lcs]
    final_exact = history.get("eval/exact_match") or [metrics.get("eval/exact_match", False)]
    return RunRow(
        label=display_label(record), seed=int(record["seed"]), target_id=str(record["target_id"]), k=record.get("target_k"),
        success=bool(metrics.get("eval/exact_match", False)), lcs=best_lcs,
        token_accuracy=float(metrics.get("eval/token_accuracy", 0.0)), final_lcs=float(final_lcs[-1]),
        final_success=bool(final_exact[-1]), wall_time_s=float(result["wall_time_s"]),
        steps_run=int(result["steps_run"]), success_step=result.get("success_step"),
        forward_tokens=int(result["forward_tokens"]),
        prompt_metrics={k: float(v) for k, v in metrics.items() if k.startswith("prompt/")},
    )


def load_runs(store: RunStore) -> tuple[list[RunRow], list[dict[str, Any]], list[RunCurves]]:
    """(rows of ok runs, failed records, curves of ok runs) from the latest record of each key."""
    rows, failed, curves = [], [], []
    for record in store.latest().values():
        if record.get("status") != "ok":
            failed.append(record)
            continue
        history = store.history(record)
        rows.append(_row(record, history))
        curves.append(run_curves(display_label(record), record["result"], history))
    return rows, failed, curves


# ----------------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stat:
    mean: float
    stderr: float  # nan with a single seed
    n_seeds: int

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "–"
        if math.isnan(self.stderr):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.stderr:.{digits}f}"


class Seeded(Protocol):
    seed: int


def over_seeds(rows: Sequence[Seeded], value: Callable[[Any], float]) -> Stat:
    """Mean over targets within each seed, then mean and standard error over seeds (any rows with a seed:
    inversion runs, or latent runs with one row per seed)."""
    by_seed = defaultdict(list)
    for row in rows:
        by_seed[row.seed].append(value(row))
    means = [statistics.fmean(values) for values in by_seed.values()]
    if not means:
        return Stat(float("nan"), float("nan"), 0)
    stderr = statistics.stdev(means) / math.sqrt(len(means)) if len(means) > 1 else float("nan")
    return Stat(statistics.fmean(means), stderr, len(means))


def _median(values: Iterable[float | None]) -> float:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else float("nan")


def group(rows: Sequence[RunRow], key: Callable[[RunRow], Any]) -> dict[Any, list[RunRow]]:
    groups = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return dict(groups)


def auc_over_k(by_k: dict[Any, dict[str, Any]], metric: str = "lcs") -> float:
    """Trapezoid area of the mean metric over sorted k, normalised by the k range (reference §8.2); [0, 1]."""
    points = sorted((k, stats[metric].mean) for k, stats in by_k.items() if k is not None)
    if len(points) < 2:
        return float("nan")
    area = sum((k1 - k0) * (v0 + v1) / 2 for (k0, v0), (k1, v1) in itertools.pairwise(points))
    return area / (points[-1][0] - points[0][0])


def summarize(rows: Sequence[RunRow]) -> dict[str, dict[str, Any]]:
    """Per label: overall stats, stats by k, and time/compute to success."""
    summary = {}
    for label, runs in group(rows, lambda r: r.label).items():
        by_k = {k: {"lcs": over_seeds(g, lambda r: r.lcs), "success": over_seeds(g, lambda r: float(r.success)),
                    "token_accuracy": over_seeds(g, lambda r: r.token_accuracy), "n": len(g)}
                for k, g in sorted(group(runs, lambda r: r.k).items(), key=lambda kv: (kv[0] is None, kv[0] or 0))}
        summary[label] = {
            "n": len(runs), "targets": len({r.target_id for r in runs}), "seeds": sorted({r.seed for r in runs}),
            "success": over_seeds(runs, lambda r: float(r.success)),
            "final_success": over_seeds(runs, lambda r: float(r.final_success)),
            "lcs": over_seeds(runs, lambda r: r.lcs), "final_lcs": over_seeds(runs, lambda r: r.final_lcs),
            "token_accuracy": over_seeds(runs, lambda r: r.token_accuracy),
            "time_to_success": _median(r.time_to_success for r in runs),
            "compute_to_success": _median(r.forward_tokens_to_success for r in runs),
            "wall_time": statistics.fmean(r.wall_time_s for r in runs),
            "prompt": {name: over_seeds(runs, lambda r, n=name: r.prompt_metrics.get(n, 0.0))
                       for name in sorted({n for r in runs for n in r.prompt_metrics})},
            "by_k": by_k,
            "lcs_auc": auc_over_k(by_k),
        }
    return summary


# ----------------------------------------------------------------------------- document blocks
# A report is a list of blocks rendered twice (markdown and HTML), so both always say the same.
Block = tuple  # ("h", level, text) | ("p", text) | ("table", headers, rows) | ("img", path, alt)


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def overall_table(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    headers = ["method", "runs", "targets", "seeds", "success (best)", "success (final)", "LCS (best)",
               "LCS (final)", "token acc.", "time to success s (median)", "fwd tokens to success (median)",
               "mean wall s"]
    rows = [[label, str(s["n"]), str(s["targets"]), str(len(s["seeds"])), s["success"].text(),
             s["final_success"].text(), s["lcs"].text(), s["final_lcs"].text(), s["token_accuracy"].text(),
             _fmt(s["time_to_success"]), _fmt(s["compute_to_success"], 0), _fmt(s["wall_time"])]
            for label, s in summary.items()]
    return headers, rows


def by_k_table(summary: dict[str, dict[str, Any]], metric: str) -> tuple[list[str], list[list[str]]]:
    ks = sorted({k for s in summary.values() for k in s["by_k"] if k is not None})
    headers = ["method"] + [f"k={k}" for k in ks]
    rows = [[label] + [s["by_k"][k][metric].text() if k in s["by_k"] else "–" for k in ks]
            for label, s in summary.items()]
    if metric == "lcs" and len(ks) > 1:  # the reference's AUC over k, normalised to [0, 1]
        headers.append("AUC over k")
        for row, s in zip(rows, summary.values()):
            row.append(_fmt(s["lcs_auc"], 3))
    return headers, rows


def prompt_table(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]] | None:
    names = sorted({n for s in summary.values() for n in s["prompt"]})
    if not names:
        return None
    rows = [[label] + [s["prompt"][n].text() if n in s["prompt"] else "–" for n in names]
            for label, s in summary.items()]
    return ["method"] + names, rows


def shared_success_table(rows: Sequence[RunRow]) -> tuple[list[str], list[list[str]]] | None:
    """Time and compute to success of each pair of methods on the (target, seed) runs that both invert.

    Medians over each method's own successes compare different target sets (a method that inverts only the
    easy targets looks fast); on the shared successes the ratio compares like with like. None when no pair
    shares a success."""
    solved = {label: {(r.target_id, r.seed): r for r in runs if r.time_to_success is not None}
              for label, runs in group(rows, lambda r: r.label).items()}
    table = []
    for first, second in itertools.combinations(solved, 2):
        shared = sorted(solved[first].keys() & solved[second].keys())
        if not shared:
            continue
        pairs = [(solved[first][run], solved[second][run]) for run in shared]
        seconds = [statistics.median(side.time_to_success for side in column) for column in zip(*pairs)]
        tokens = [statistics.median(side.forward_tokens_to_success for side in column) for column in zip(*pairs)]
        table.append([first, second, str(len(shared)), _fmt(seconds[0]), _fmt(seconds[1]),
                      _fmt(seconds[0] / seconds[1], 2), _fmt(tokens[0], 0), _fmt(tokens[1], 0),
                      _fmt(tokens[0] / tokens[1], 2)])
    if not table:
        return None
    headers = ["method A", "method B", "shared successes", "median s A", "median s B", "A / B s",
               "median fwd tokens A", "median fwd tokens B", "A / B tokens"]
    return headers, table


def report_blocks(title: str, summary: dict, failed: list[dict], figures: dict[str, str],
                  rows: Sequence[RunRow]) -> list[Block]:
    note = ("Mean ± standard error over seeds (per-seed means over targets). Best = the returned best discrete "
            "prompt; final = the last discrete evaluation. Early-stopped targets are counted, never dropped.")
    blocks: list[Block] = [("h", 1, title), ("p", note)]
    blocks += [("h", 2, "Overall"), ("table", *overall_table(summary))]
    if any(k is not None for s in summary.values() for k in s["by_k"]):
        blocks += [("h", 2, "LCS ratio by k"), ("table", *by_k_table(summary, "lcs")),
                   ("h", 2, "Success rate by k"), ("table", *by_k_table(summary, "success")),
                   ("h", 2, "Token accuracy by k"), ("table", *by_k_table(summary, "token_accuracy"))]
    prompts = prompt_table(summary)
    if prompts:
        blocks += [("h", 2, "Prompt recovery (against the ground-truth prompt)"), ("table", *prompts)]
    shared = shared_success_table(rows)
    if shared:
        blocks += [("h", 2, "Time to success on the runs both methods invert"), ("table", *shared)]
    return blocks + closing_blocks(figures, failed)


def closing_blocks(figures: dict[str, str], failed: list[dict]) -> list[tuple]:
    """The figures and the failed runs, the last sections of every report."""
    blocks: list[tuple] = []
    if figures:
        blocks.append(("h", 2, "Figures"))
        blocks += [("img", path, alt) for alt, path in figures.items()]
    if failed:
        blocks += [("h", 2, f"Failed runs ({len(failed)})"),
                   ("table", ["run", "error"], [[r["key"], str(r.get("error"))] for r in failed])]
    return blocks


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for block in blocks:
        if block[0] == "h":
            out.append("#" * block[1] + " " + block[2])
        elif block[0] == "p":
            out.append(block[1])
        elif block[0] == "table":
            headers, rows = block[1], block[2]
            cells = [headers, ["---"] * len(headers)] + rows
            out.append("\n".join("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells))
        elif block[0] == "img":
            out.append(f"![{block[2]}]({block[1]})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: Sequence[Block], title: str) -> str:
    esc = html.escape
    body = []
    for block in blocks:
        if block[0] == "h":
            body.append(f"<h{block[1]}>{esc(block[2])}</h{block[1]}>")
        elif block[0] == "p":
            body.append(f"<p>{esc(block[1])}</p>")
        elif block[0] == "table":
            head = "".join(f"<th>{esc(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif block[0] == "img":
            body.append(f'<figure><img src="{esc(block[1])}" alt="{esc(block[2])}"><figcaption>{esc(block[2])}'
                        "</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(body)}</body></html>\n")


# ----------------------------------------------------------------------------- LaTeX
def latex_escape(text: str) -> str:
    """Escape LaTeX specials outside $...$, so labels like DLMI($\\tau=100$) keep their math."""
    parts = text.split("$")
    for i in range(0, len(parts), 2):  # even parts are outside math
        for char in "\\&%#_{}":
            parts[i] = parts[i].replace(char, "\\" + char if char != "\\" else "\\textbackslash{}")
    return "$".join(parts)


def to_latex(summary: dict[str, dict[str, Any]]) -> str:
    def cell(stat: Stat) -> str:
        return stat.text().replace("±", "$\\pm$")

    ks = sorted({k for s in summary.values() for k in s["by_k"] if k is not None})
    columns = "l" + "r" * (3 + len(ks))
    head = ["Method", "Success", "LCS", "Token acc."] + [f"LCS $k{{=}}{k}$" for k in ks]
    lines = ["\\begin{table}[t]", "\\centering", f"\\begin{{tabular}}{{{columns}}}", "\\toprule",
             " & ".join(head) + " \\\\", "\\midrule"]
    for label, s in summary.items():
        by_k = [cell(s["by_k"][k]["lcs"]) if k in s["by_k"] else "--" for k in ks]
        lines.append(" & ".join([latex_escape(label), cell(s["success"]), cell(s["lcs"]),
                                 cell(s["token_accuracy"])] + by_k) + " \\\\")
    caption = ("\\caption{Greedy-decoding success rate, LCS ratio and token accuracy of the best discrete prompt; "
               "mean $\\pm$ standard error over seeds.}")
    lines += ["\\bottomrule", "\\end{tabular}", caption, "\\end{table}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- entry point
def write_report(run_dir: str | Path, out_dir: str | Path | None = None, *, figures: bool = True) -> dict[str, Path]:
    """Write report.md, report.html, table.tex and figures/*.png; return their paths."""
    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    if not store.results.is_file():
        raise FileNotFoundError(f"no {store.results.name} in {str(run_dir)!r}: not a sweep directory")
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    if sweep_kind(run_dir) == "latent":
        # Imported here: latent_report builds on this module.
        from softtoken.experiments.latent_report import write_latent_report

        return write_latent_report(store, out_dir, figures=figures)
    rows, failed, curves = load_runs(store)
    summary = summarize(rows)
    pictures = {}
    if figures and rows:
        pictures = {alt: str(path.relative_to(out_dir)) for alt, path in
                    write_figures(summary, curves, out_dir / "figures").items()}
    title = f"Report: {run_dir.name}"
    return write_report_files(out_dir, title, report_blocks(title, summary, failed, pictures, rows),
                              to_latex(summary))


def write_report_files(out_dir: Path, title: str, blocks: list[Block], latex: str) -> dict[str, Path]:
    """report.md, report.html and table.tex in `out_dir`; their paths by format."""
    paths = {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "latex": out_dir / "table.tex"}
    out_dir.mkdir(parents=True, exist_ok=True)
    paths["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
    paths["html"].write_text(to_html(blocks, title), encoding="utf-8")
    paths["latex"].write_text(latex, encoding="utf-8")
    return paths
