from pathlib import Path

import pytest
from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.experiments.bench import bench_spec
from softtoken.experiments.spec import SpecError, load_spec, parse_spec

CPU_SMALL = Path(__file__).resolve().parents[2] / "bench" / "cpu-small.yaml"
runner = CliRunner()


def test_cpu_small_bench_spec_is_the_advertised_setup():
    spec = load_spec(CPU_SMALL)
    assert spec.model is None and spec.prompt_length == 10 and spec.budget.seconds == 180
    assert dict(spec.dataset.generate) == {"k_min": 1, "k_max": 6, "k_step": 5, "num_samples": 3, "max_length": 10,
                                           "noise_factor": 1.0, "seed": 42}
    labels = [m.label for m in spec.methods]
    assert labels == ["dlmi-paper", "gbda", "reinforce", "soda", "gcg", "engine-anneal", "gcg-fast", "relax-then-gcg",
                      "pez", "adc", "gcg-combo", "gcg-target", "adc-sparse", "adc-polish", "adc-copy", "pgd",
                      "pgd-short", "gcg-copy", "gcg-copy-screen"]
    assert [m.preset for m in spec.methods][-13:] == ["gcg-fast", "relax-then-gcg", "pez", "adc", "gcg-combo",
                                                      "gcg-target", "adc-sparse", "adc-polish", "adc-copy", "pgd",
                                                      "pgd-short", "gcg-copy", "gcg-copy-screen"]


def test_bench_spec_rejects_per_method_budgets_and_unknown_labels(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "budget": {"seconds": 5}, "methods": [
        {"label": "a", "method": "dlmi"}, {"label": "b", "method": "dlmi", "budget": {"steps": 3}}]}, tmp_path)
    with pytest.raises(SpecError, match="own budget"):
        bench_spec(spec)
    with pytest.raises(SpecError, match="unknown label"):
        bench_spec(spec, labels=["zz"])
    reduced = bench_spec(spec, labels=["a"], seconds=2.0, limit_targets=1)
    assert [m.label for m in reduced.methods] == ["a"]
    assert (reduced.budget.seconds, reduced.dataset.limit) == (2.0, 1)


def test_bench_spec_keeps_only_the_chosen_seeds(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "budget": {"seconds": 5}, "seeds": [0, 1, 2], "methods": [
        {"label": "a", "method": "dlmi"}, {"label": "b", "method": "dlmi", "seeds": [2, 7]},
        {"label": "c", "method": "dlmi", "seeds": [7]}]}, tmp_path)
    reduced = bench_spec(spec, seeds=[1, 2])
    assert reduced.seeds == (1, 2)
    assert [(m.label, m.seeds) for m in reduced.methods] == [("a", (1, 2)), ("b", (2,))]
    only_own = bench_spec(spec, seeds=[7])
    assert [(m.label, m.seeds) for m in only_own.methods] == [("b", (7,)), ("c", (7,))]
    with pytest.raises(SpecError, match=r"unknown seed\(s\) \[5\]"):
        bench_spec(spec, seeds=[1, 5])


def test_bench_spec_keeps_only_the_chosen_targets(tmp_path):
    spec = parse_spec({"dataset": {"path": "t.txt", "ids": ["t1", "t2", "t3"]}, "budget": {"seconds": 5},
                       "methods": [{"label": "a", "method": "dlmi"}]}, tmp_path)
    assert bench_spec(spec, targets=["t3", "t1", "t3"]).dataset.ids == ("t3", "t1")
    with pytest.raises(SpecError, match=r"unknown target id\(s\) \['t9'\]"):
        bench_spec(spec, targets=["t1", "t9"])
    open_spec = parse_spec({"dataset": "t.txt", "budget": {"seconds": 5}, "methods": [
        {"label": "a", "method": "dlmi"}]}, tmp_path)
    assert bench_spec(open_spec, targets=["x"]).dataset.ids == ("x",)
    assert bench_spec(open_spec).dataset.ids is None


def test_bench_cli_refuses_unknown_targets_in_one_line(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("dataset: {path: t.txt, ids: [t1]}\nbudget: {seconds: 5}\nmethods: [{label: a, method: dlmi}]\n")
    result = runner.invoke(app, ["bench", str(spec), "--out", str(tmp_path / "b"), "--targets", "t1,t2"])
    assert result.exit_code != 0
    assert "--targets: unknown target id(s) ['t2']; the spec's ids: ['t1']" in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("seeds", ["a", "0,x", ",", "1.5"])
def test_bench_cli_refuses_bad_seeds_in_one_line(seeds, tmp_path):
    result = runner.invoke(app, ["bench", str(CPU_SMALL), "--out", str(tmp_path / "b"), "--seeds", seeds])
    assert result.exit_code != 0
    assert f"--seeds must be comma-separated integers, e.g. 0,1; got {seeds!r}" in result.output
    assert not (tmp_path / "b").exists()


def test_bench_cli_runs_methods_on_generated_targets_and_writes_the_table(model_dir, write_spec, tmp_path):
    spec = write_spec({
        "name": "tiny-bench", "model": str(model_dir), "prompt_length": 2, "seeds": [0], "threads_per_run": 1,
        "dataset": {"generate": {"k_min": 1, "k_max": 6, "k_step": 5, "num_samples": 2, "max_length": 3}},
        "budget": {"steps": 4, "seconds": 30},
        "methods": [{"label": "tf", "method": "dlmi", "options": {"batch_size": 2, "eval_every": 2}},
                    {"label": "free", "method": "dlmi", "options": {"batch_size": 2, "eval_every": 2,
                                                                     "teacher_forcing": False}}],
    })
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", str(spec), "--out", str(out), "--limit-targets", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    table = (out / "bench.md").read_text()
    assert "| tf | 3 |" in table and "| free | 3 |" in table
    assert "k1_sample0" in table and "k6_sample0" in table and "k1_sample1" in table
    assert (out / "targets.json").is_file() and (out / "report.md").is_file()
