"""The latent report is computed from stored records only: exact mean ± stderr over seeds, per difficulty,
before/after RL, stale and failed records, and the figures."""

import json
import math
import statistics

import pytest
from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.experiments.latent_report import load_latent_runs, summarize_latent
from softtoken.experiments.store import RunStore

runner = CliRunner()


def _evaluation(accuracy, by_steps, *, latent=True):
    """An evaluation record as runs.evaluation_record writes it; by_steps: {S: (n, accuracy, latent steps)}."""
    n = sum(count for count, _, _ in by_steps.values())
    steps = {str(s): {"n": count, "accuracy": acc, "length": k + 2, **({"latent_steps": k} if latent else {})}
             for s, (count, acc, k) in by_steps.items()}
    mean_k = sum(count * k for count, _, k in by_steps.values()) / n
    return {"options": "gsm8k-aug-val/latent_thinking", "latent_thinking": latent, "n": n, "accuracy": accuracy,
            "latent_steps": mean_k if latent else 0.0, "length": mean_k + 2, "length_std": 0.0, "length_max": 0,
            "bad_format": 0, "truncated": 0, "by_steps": steps}


def _record(label, seed, kind, mode, evaluations, *, start=None, parent=None, series=None, k=None):
    result = {"steps": 10, "rollbacks": 0, "wall_s": float(seed), "train": {}, "evaluations": evaluations}
    if start is not None:
        result["start"] = start
    return {"key": f"{kind}/h-{label}/{seed}/{label}", "label": label, "seed": seed, "kind": kind, "mode": mode,
            "series": series, "k": k, "from": parent, "status": "ok", "result": result}


# A (flat-2, 3 seeds): accuracy 0.2, 0.4, 0.9; by S: S=1 0.5/0.5/1.0, S=2 0.0/0.25/0.8.
# A+RL (from A): before = A's numbers, after: latent steps 1 at S=1 on every seed, 2/1/0 at S=2.
A_ACC = {1: (0.2, 0.5, 0.0), 2: (0.4, 0.5, 0.25), 3: (0.9, 1.0, 0.8)}
RL_S2 = {1: 2, 2: 1, 3: 0}


def _a(seed):
    total, s1, s2 = A_ACC[seed]
    return _evaluation(total, {1: (2, s1, 2), 2: (2, s2, 2)})


def _rl(seed):
    return _evaluation(0.5, {1: (2, 0.5, 1), 2: (2, 0.5, RL_S2[seed])})


@pytest.fixture()
def run_dir(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open_for_writing()
    records = [_record("A", seed, "sft", "latent", {"val": _a(seed)}, series="flat-k", k=2) for seed in (1, 2, 3)]
    records += [_record("CoT", seed, "sft", "cot", {"val": _evaluation(acc, {1: (2, acc, 0), 2: (2, acc, 0)},
                                                                        latent=False)})
                for seed, acc in ((1, 0.5), (2, 0.7))]
    records += [_record("A+RL", seed, "grpo", "latent", {"val": _rl(seed)}, start={"val": _a(seed)}, parent="A")
                for seed in (1, 2, 3)]
    stale = _record("A", 1, "sft", "latent", {"val": _evaluation(1.0, {1: (4, 1.0, 6)})})
    stale["key"] = "sft/old/1/A"  # an entry changed since: not in spec.json's keys
    failed = {"key": "sft/h-B/1/B", "label": "B", "seed": 1, "kind": "sft", "status": "failed", "result": None,
              "error": "NonFiniteLossError: nan"}
    for record in [stale, *records, failed]:
        store.append(record)
    keys = [r["key"] for r in records] + [failed["key"]]
    (tmp_path / "run" / "spec.json").write_text(json.dumps({"kind": "latent", "keys": keys}))
    return tmp_path / "run"


def stderr(values):
    return statistics.stdev(values) / math.sqrt(len(values))


def test_summary_is_the_mean_and_standard_error_over_seeds_overall_and_by_difficulty(run_dir):
    rows, failed, left_out = load_latent_runs(RunStore(run_dir))
    assert [r.label for r in rows] == ["A"] * 3 + ["CoT"] * 2 + ["A+RL"] * 3  # spec order
    assert [r["label"] for r in failed] == ["B"] and left_out == 1
    summary = summarize_latent(rows)
    val = summary["A"]["evaluations"]["val"]
    assert val["accuracy"].mean == pytest.approx(0.5)
    assert val["accuracy"].stderr == pytest.approx(stderr([0.2, 0.4, 0.9]))
    assert val["by_steps"][2]["accuracy"].mean == pytest.approx(1.05 / 3)
    assert val["by_steps"][2]["accuracy"].stderr == pytest.approx(stderr([0.0, 0.25, 0.8]))
    assert val["latent_steps"].mean == 2 and val["latent_steps"].stderr == 0
    assert summary["CoT"]["evaluations"]["val"]["by_steps"][1]["latent_steps"] is None  # a CoT evaluation
    rl = summary["A+RL"]
    assert rl["start"]["val"]["accuracy"].mean == pytest.approx(0.5)  # before: the start model's numbers
    assert rl["evaluations"]["val"]["by_steps"][2]["latent_steps"].mean == pytest.approx(1.0)
    assert rl["evaluations"]["val"]["by_steps"][2]["latent_steps"].stderr == pytest.approx(stderr([2, 1, 0]))
    assert summary["A"]["start"] == {} and summary["A"]["k"] == 2 and rl["from"] == "A"


def test_report_tables_and_figures_come_from_the_store(run_dir):
    result = runner.invoke(app, ["report", str(run_dir)])
    assert result.exit_code == 0, result.output
    text = (run_dir / "report.md").read_text()
    assert text in result.output  # the command prints the tables it writes
    err = f"{stderr([0.2, 0.4, 0.9]):.3f}"
    assert f"| A | 0.500 ± {err} | 2.00 ± 0.00 | 4.00 ± 0.00 |" in text
    assert f"| A | 0.667 ± {stderr([0.5, 0.5, 1.0]):.3f} | 0.350 ± {stderr([0.0, 0.25, 0.8]):.3f} |" in text  # by S
    assert "| CoT | 0.600 ± 0.100 | 0.00 ± 0.00 | 2.00 ± 0.00 |" in text
    # After RL the latent steps are 1.5, 1.0 and 0.5 on the three seeds (S=1 and S=2 rows in equal numbers).
    before_after = "| 0.500 ± 0.000 | 2.00 ± 0.00 | 1.00 ± 0.29 | 4.00 ± 0.00 | 3.00 ± 0.29 |"
    assert f"| A+RL | A | 0.500 ± {err} {before_after}" in text
    assert "| A+RL | after | 1.00 ± 0.00 | 1.00 ± 0.58 |" in text
    # Accuracy by S before RL is A's (S=1: 0.5, 0.5, 1.0), after RL 0.5 at every S on every seed.
    assert f"| A+RL | before | 0.667 ± {stderr([0.5, 0.5, 1.0]):.3f} | 0.350 ± {stderr([0.0, 0.25, 0.8]):.3f} |" in text
    assert "| A+RL | after | 0.500 ± 0.000 | 0.500 ± 0.000 |" in text
    assert "| sft/h-B/1/B | NonFiniteLossError: nan |" in text and "1 stored records belong to entries changed" in text
    assert "\\pm" in (run_dir / "table.tex").read_text() and "<table>" in (run_dir / "report.html").read_text()
    pytest.importorskip("matplotlib")
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert figures == {"accuracy_vs_k.png", "rl_latent_steps_by_difficulty.png"}
