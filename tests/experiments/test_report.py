import math

import pytest

from softtoken.experiments.plots import build_figures, carried_mean, run_curves
from softtoken.experiments.report import (RunRow, load_runs, over_seeds, shared_success_table, summarize, to_latex,
                                         write_report)
from softtoken.experiments.store import RunStore


def _record(label, seed, target, k, *, lcs, exact, steps, history_lcs, method="m", **metrics):
    loss = [1.0 / (i + 1) for i in range(steps)]
    return {
        "key": f"{label}/h/{seed}/{target}", "status": "ok", "label": label, "seed": seed, "target_id": target,
        "target_k": k,
        "result": {"metrics": {"eval/exact_match": exact, "eval/lcs_ratio": lcs, "eval/token_accuracy": lcs,
                               **metrics},
                   "wall_time_s": float(steps), "steps_run": steps, "success_step": steps if exact else None,
                   "forward_tokens": 10 * steps, "prompt_ids": [1], "output_ids": [1], "method": method},
        "history": {"loss/target": loss, "relax/tau_mean": [1.0] * steps,
                    "eval/step": list(range(1, len(history_lcs) + 1)), "eval/lcs_ratio": history_lcs,
                    "eval/exact_match": [v == 1.0 for v in history_lcs]},
    }


@pytest.fixture()
def run_dir(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open_for_writing()
    # Seed 1: one target solved early (stopped at step 2), one never solved (ran all 6 steps).
    store.append(_record("M", 1, "a", 1, lcs=1.0, exact=True, steps=2, history_lcs=[0.5, 1.0]))
    store.append(_record("M", 1, "b", 6, lcs=0.5, exact=False, steps=6, history_lcs=[0.0, 0.5, 0.25]))
    # Seed 2: both unsolved.
    store.append(_record("M", 2, "a", 1, lcs=0.5, exact=False, steps=6, history_lcs=[0.5, 0.5, 0.5]))
    unsolved = _record("M", 2, "b", 6, lcs=0.0, exact=False, steps=6, history_lcs=[0.0, 0.0, 0.0])
    unsolved["history"].update({"diag/step": [1, 4], "diag/stgs_grad_variance_max": [0.5, 0.25],
                                "diag/stgs_grad_bias_abs_max": [0.1, 0.05]})
    store.append(unsolved)
    store.append({"key": "M/h/3/a", "status": "failed", "label": "M", "seed": 3, "target_id": "a",
                  "error": "NonFiniteLossError: nan", "result": None})
    return tmp_path / "run"


def test_report_counts_early_stopped_targets_with_final_and_best_values(run_dir):
    rows, failed, _ = load_runs(RunStore(run_dir))
    assert len(rows) == 4 and len(failed) == 1
    summary = summarize(rows)["M"]
    assert summary["success"].mean == pytest.approx(0.25)  # 1 of 4 runs, the early-stopped one included
    assert summary["lcs"].mean == pytest.approx((0.75 + 0.25) / 2)  # per-seed means 0.75 and 0.25
    assert summary["final_lcs"].mean == pytest.approx(((1.0 + 0.25) / 2 + 0.25) / 2)
    assert summary["by_k"][1]["lcs"].mean == pytest.approx(0.75)
    assert summary["by_k"][6]["lcs"].mean == pytest.approx(0.25)
    assert summary["lcs_auc"] == pytest.approx((0.75 + 0.25) / 2)
    assert summary["time_to_success"] == pytest.approx(2.0)
    assert summary["compute_to_success"] == pytest.approx(20.0)


def test_over_seeds_gives_mean_and_standard_error_of_per_seed_means():
    rows = [RunRow(label="M", seed=s, target_id=t, k=1, success=False, lcs=v, token_accuracy=v, final_lcs=v,
                   final_success=False, wall_time_s=1.0, steps_run=1, success_step=None, forward_tokens=1)
            for s, t, v in [(1, "a", 0.2), (1, "b", 0.4), (2, "a", 0.6), (2, "b", 0.8)]]
    stat = over_seeds(rows, lambda r: r.lcs)
    assert stat.mean == pytest.approx(0.5) and stat.n_seeds == 2
    assert stat.stderr == pytest.approx(math.sqrt(((0.3 - 0.5) ** 2 + (0.7 - 0.5) ** 2) / 1) / math.sqrt(2))
    assert math.isnan(over_seeds(rows[:2], lambda r: r.lcs).stderr)


def test_shared_success_table_compares_pairs_only_on_the_runs_both_invert():
    def run(label, target, seconds, tokens, success=True):
        return RunRow(label=label, seed=0, target_id=target, k=None, success=success, lcs=1.0, token_accuracy=1.0,
                      final_lcs=1.0, final_success=success, wall_time_s=seconds, steps_run=10,
                      success_step=10 if success else None, forward_tokens=tokens)
    rows = [run("A", "t1", 10, 100), run("A", "t2", 30, 300), run("A", "t3", 50, 500),
            run("B", "t1", 40, 200), run("B", "t2", 20, 800), run("B", "t3", 99, 999, success=False),
            run("B", "t4", 1, 1), run("C", "t1", 5, 5, success=False)]
    headers, table = shared_success_table(rows)
    # A's own median (30 s over three targets) would flatter nothing here: on t1 and t2 it is 20 s against 30 s.
    assert headers[2] == "shared successes" and table == [["A", "B", "2", "20.0", "30.0", "0.67", "200", "500", "0.40"]]
    assert shared_success_table([r for r in rows if r.label != "B"]) is None


def test_carried_mean_keeps_stopped_runs_at_their_last_value_and_starts_once_every_run_has_one():
    assert carried_mean([([1, 2], [1.0, 1.0]), ([1, 2, 3, 4], [0.0, 0.5, 0.25, 0.0])]) == (
        [1, 2, 3, 4], [0.5, 0.75, 0.625, 0.5])
    assert carried_mean([([3], [1.0]), ([10, 20], [0.2, 0.4])]) == ([10, 20], [0.6, 0.7])
    assert carried_mean([([], []), ([], [])]) == ([], [])


def test_write_report_writes_markdown_html_latex_and_figures(run_dir):
    pytest.importorskip("matplotlib")
    paths = write_report(run_dir)
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "| M | 4 | 2 | 2 | 0.250 ± 0.250 |" in markdown
    assert "## LCS ratio by k" in markdown and "Failed runs (1)" in markdown and "NonFiniteLossError" in markdown
    assert "<table>" in page and "0.250 ± 0.250" in page and "NonFiniteLossError" in page
    for name in ("lcs_by_k.png", "loss.png", "loss_seconds.png", "tau.png", "eval_lcs.png", "eval_lcs_seconds.png",
                 "grad_variance.png", "grad_bias.png"):
        assert (run_dir / "figures" / name).read_bytes().startswith(b"\x89PNG")
        assert f"figures/{name}" in markdown and f"figures/{name}" in page
    assert "\\begin{tabular}" in paths["latex"].read_text()


def test_latex_table_escapes_text_but_keeps_math_in_labels(run_dir):
    rows, _, _ = load_runs(RunStore(run_dir))
    rows = [RunRow(**{**row.__dict__, "label": "DLMI($\\tau=100$)_x & y"}) for row in rows]
    latex = to_latex(summarize(rows))
    assert "DLMI($\\tau=100$)\\_x \\& y" in latex


def test_report_gives_each_grid_point_its_own_row(tiny_spec, tmp_path):
    from softtoken.experiments.backends import LocalBackend
    from softtoken.experiments.spec import parse_spec
    from softtoken.experiments.sweep import run_sweep

    data = tiny_spec(seeds=[1], dataset={**tiny_spec()["dataset"], "limit": 1})
    data["methods"] = [{"label": "D", "method": "dlmi", "options": {"batch_size": 2, "eval_every": 2},
                        "grid": {"temperature": [1.0, 10.0]}}]
    run_sweep(parse_spec(data), tmp_path / "run", LocalBackend(), progress=False)
    rows, _, _ = load_runs(RunStore(tmp_path / "run"))
    assert sorted(r.label for r in rows) == ["D [temperature=1.0]", "D [temperature=10.0]"]


def _figures(store_dir):
    rows, _, curves = load_runs(RunStore(store_dir))
    return {name: fig for _, name, fig in build_figures(summarize(rows), curves)}


def _lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def _store(tmp_path, *records):
    store = RunStore(tmp_path / "run")
    store.open_for_writing()
    for record in records:
        store.append(record)
    return tmp_path / "run"


@pytest.mark.parametrize("history", [
    {},  # an older result: the history ends before the final judgement, here before any evaluation
    {"eval/step": [7], "eval/seconds": [15.0], "eval/lcs_ratio": [0.65], "eval/exact_match": [False]},
])
def test_lcs_figure_shows_a_run_stopped_before_its_first_evaluation_as_a_marker(tmp_path, history):
    pytest.importorskip("matplotlib")
    stopped = _record("gcg-fast", 1, "a", None, lcs=0.65, exact=False, steps=7, history_lcs=[])
    stopped["result"]["wall_time_s"] = 15.0
    stopped["history"] = history
    figures = _figures(_store(tmp_path, stopped, _record("soda", 1, "a", None, lcs=0.5, exact=False, steps=6,
                                                          history_lcs=[0.0, 0.5, 0.25])))
    for name, x in (("eval_lcs.png", 7.0), ("eval_lcs_seconds.png", 15.0)):
        lines = _lines(figures[name].axes[0])
        assert set(lines) == {"gcg-fast", "soda"}
        point = lines["gcg-fast"]
        assert list(point.get_xdata()) == [x] and list(point.get_ydata()) == [0.65] and point.get_marker() == "o"
    assert list(_lines(figures["eval_lcs.png"].axes[0])["soda"].get_xdata()) == [1, 2, 3, 6]  # + the final point


def test_loss_figure_gives_each_loss_kind_its_own_panel_on_both_axes(tmp_path):
    pytest.importorskip("matplotlib")
    gcg = _record("gcg", 1, "a", None, lcs=0.5, exact=False, steps=4, history_lcs=[0.5], method="gcg",
                  **{"loss/kind": "crossentropy/mean"})
    soda = _record("soda", 1, "a", None, lcs=0.5, exact=False, steps=4, history_lcs=[0.5], method="soda",
                   **{"loss/kind": "margin/mean"})
    older = _record("reinforce", 1, "a", None, lcs=0.5, exact=False, steps=4, history_lcs=[0.5], method="reinforce")
    figures = _figures(_store(tmp_path, gcg, soda, older))
    for name in ("loss.png", "loss_seconds.png"):
        panels = {ax.get_ylabel(): set(_lines(ax)) for ax in figures[name].axes}
        assert panels == {"loss: crossentropy/mean": {"gcg"}, "loss: margin/mean": {"soda"},
                          "loss: reinforce": {"reinforce"}}


def test_run_curves_place_steps_in_seconds_by_timed_evaluations_or_spread_wall_time():
    result = {"steps_run": 4, "wall_time_s": 9.0, "method": "m", "metrics": {"eval/lcs_ratio": 0.5}}
    loss = [4.0, 3.0, 2.0, 1.0]
    timed = run_curves("M", result, {"loss/target": loss, "eval/step": [2, 4], "eval/seconds": [1.0, 9.0],
                                     "eval/lcs_ratio": [0.25, 0.5]})
    assert timed.series["loss/target", "seconds"] == ([0.5, 1.0, 5.0, 9.0], loss)
    assert timed.series["eval/lcs_ratio", "seconds"] == ([1.0, 9.0], [0.25, 0.5])
    untimed = run_curves("M", result, {"loss/target": loss, "eval/step": [2], "eval/lcs_ratio": [0.25]})
    assert untimed.series["loss/target", "seconds"] == ([2.25, 4.5, 6.75, 9.0], loss)
    assert untimed.series["eval/lcs_ratio", "seconds"] == ([4.5, 9.0], [0.25, 0.5])
    assert untimed.series["eval/lcs_ratio", "step"] == ([2.0, 4.0], [0.25, 0.5]) and untimed.loss_kind == "m"
