"""Latent sweeps: spec validation, the store and resume (SIGKILL included), GRPO after its start run,
re-keying of a changed entry, and the shipped specs."""

import copy
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.experiments import latent_runner
from softtoken.experiments.latent_report import load_latent_runs, summarize_latent
from softtoken.experiments.latent_spec import load_latent_spec, parse_latent_spec
from softtoken.experiments.latent_sweep import prepare_latent, run_latent_sweep
from softtoken.experiments.spec import SpecError
from softtoken.experiments.store import RunStore

runner = CliRunner()
SWEEP = [sys.executable, "-c", "from softtoken.cli_experiments import app; app()", "sweep"]
REPO = Path(__file__).resolve().parents[2]
SHORT = "batch_size_4/lr_1e-3/val_period_100/save_checkpoint_period_1"
VAL_LATENT = "gsm8k-aug-val/latent_thinking/max_new_tokens_8"


def tiny_latent_spec(**overrides) -> dict:
    """Two entries (CoT and flat-2 latent) x two seeds on 24 dial rows; each run takes about a second."""
    base = {
        "name": "tiny-latent", "kind": "latent", "seeds": [0, 1], "threads_per_run": 1,
        "data": {"task": "dial", "train_size": 24, "val_size": 6, "test_size": 6, "min_steps": 1, "max_steps": 3},
        "model": {"tiny": {"hidden": 32, "layers": 1, "heads": 2}},
        "runs": [
            {"label": "CoT", "train": f"gsm8k-aug/{SHORT}/steps_4", "val": "gsm8k-aug-val/max_new_tokens_24"},
            {"label": "latent-2", "series": "flat-k", "latent": "recurrent_filter_MLP",
             "train": f"gsm8k-aug/latent_flat_2/codi_loss_20/{SHORT}/steps_4", "val": VAL_LATENT,
             "eval": {"test": "gsm8k-aug-test/latent_thinking/max_new_tokens_8"}},
        ],
    }
    return {**base, **overrides}


COT = tiny_latent_spec()["runs"][0]
GRPO_ENTRY = {"label": "latent-2+RL", "from": "latent-2", "val": VAL_LATENT,
              "grpo": "lr_1e-4/beta_1e-3/steps_2/eval_steps_100/save_steps_1/num_gen_2/max_completion_length_10",
              "train": "slice_proportion_50p/batch_size_4/rel_len_penalty_1e-1"}


def outcome(run_dir) -> dict:
    """Per run key: status and result without its wall time."""
    return {key: (r["status"], {k: v for k, v in (r["result"] or {}).items() if k != "wall_s"})
            for key, r in RunStore(run_dir).latest().items()}


def aggregate(run_dir) -> dict:
    rows, _, _ = load_latent_runs(RunStore(run_dir))
    summary = summarize_latent(rows)
    for entry in summary.values():
        del entry["wall_s"]
    return summary


# ----------------------------------------------------------------------------- spec validation
def _with_entry(index: int, **changes) -> dict:
    data = copy.deepcopy(tiny_latent_spec())
    data["runs"][index].update(changes)
    return data


@pytest.mark.parametrize(("data", "message"), [
    (_with_entry(0, train="gsm8k-aug/bogus_token/steps_4"), "runs[0] (CoT): unknown sft option 'bogus_token'"),
    (_with_entry(1, val="gsm8k-aug-val/max_new_tokens_1x"),
     "runs[1] (latent-2): eval option 'max_new_tokens_1x': cannot read"),
    (_with_entry(1, latent="recurrent_filter_MLP/nope"), "runs[1] (latent-2): unknown latent option 'nope'"),
    (_with_entry(1, eval={"test": "gsm8k-aug-tset"}), "runs[1] (latent-2): unknown eval option 'gsm8k-aug-tset'"),
    (_with_entry(0, bogus=1), "runs[0] (CoT): unknown key(s) ['bogus']"),
    ({**tiny_latent_spec(), "sedes": [1]}, "spec: unknown key(s) ['sedes']"),
    ({**tiny_latent_spec(), "runs": tiny_latent_spec()["runs"] + [{**GRPO_ENTRY, "from": "latent-9"}]},
     "runs[2] (latent-2+RL): from 'latent-9' names no entry above this one; above: ['CoT', 'latent-2']"),
    (_with_entry(0, train="gsm8k-aug/steps_4/seed_3"), "runs[0] (CoT): train sets the seed ('seed_3')"),
    ({**tiny_latent_spec(), "runs": tiny_latent_spec()["runs"] + [{**GRPO_ENTRY, "train": "model-x/batch_size_4"}]},
     "train names a start model (model-x); use `from: LABEL`"),
    (_with_entry(0, series="flat-k"), "runs[0] (CoT): series 'flat-k' needs an SFT entry with a latent_flat_<k>"),
    (_with_entry(1, label="CoT"), "runs[1] (CoT): the label is used above"),
    ({**tiny_latent_spec(), "runs": [COT, {**COT, "label": "again"}]}, "runs[1] (again): the same run as 'CoT'"),
    ({**tiny_latent_spec(), "data": {**tiny_latent_spec()["data"], "modulo": 7}},
     "unknown task 'dial' fields ['modulo']"),
    ({**tiny_latent_spec(), "model": {"tiny": {"hidden": 30, "heads": 4}}}, "hidden 30 must be a multiple of heads 4"),
    ({**tiny_latent_spec(), "model": {"tiny": {"task": "arithmetic"}}}, "model.tiny.task 'arithmetic' differs"),
    (_with_entry(1, train=f"gsm8k-aug/latent_flat_2/codi_loss_20/intermediate_block_tiny_0_3/{SHORT}"),
     "latent-2: intermediate block range (0, 3) needs at least 4 layers; model.tiny has 1"),
])
def test_a_bad_latent_spec_is_one_line_naming_the_entry_and_the_problem(data, message):
    with pytest.raises(SpecError) as caught:
        parse_latent_spec(data)
    assert len(caught.value.errors) == 1 and message in caught.value.errors[0], caught.value.errors


def test_the_sweep_command_lists_every_problem_and_writes_nothing(write_spec, tmp_path):
    data = _with_entry(0, train="gsm8k-aug/bogus_token")
    data["runs"][1]["wrong"] = 1
    result = runner.invoke(app, ["sweep", str(write_spec(data)), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "unknown sft option 'bogus_token'" in result.output and "unknown key(s) ['wrong']" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
    dry = runner.invoke(app, ["sweep", str(write_spec(tiny_latent_spec())), "--out", str(tmp_path / "r"),
                              "--dry-run"])
    assert dry.exit_code == 0 and "spec is valid: 2 entries; 4 (entry, seed) runs" in dry.output
    ray = runner.invoke(app, ["sweep", str(write_spec(tiny_latent_spec())), "--out", str(tmp_path / "r"),
                              "--backend", "ray"])
    assert ray.exit_code == 2 and "latent sweeps run on the local backend" in ray.output
    assert not (tmp_path / "r").exists()
    only = runner.invoke(app, ["sweep", str(write_spec(tiny_latent_spec())), "--out", str(tmp_path / "r"),
                               "--only", "CoT, latent-9"])
    assert only.exit_code == 2 and "--only: no entry labelled 'latent-9'" in only.output
    assert "Traceback" not in only.output and not (tmp_path / "r").exists()


def test_the_seed_reaches_the_training_config_and_the_model_and_keys_differ_only_by_it(tmp_path):
    spec = parse_latent_spec(tiny_latent_spec())
    with RunStore(tmp_path / "run").writing() as store:
        tasks = prepare_latent(spec, store)
    cot = [t for t in tasks if t.label == "CoT"]
    assert [t.options["train"].rsplit("/", 1)[1] for t in cot] == ["seed_0", "seed_1"]
    assert cot[0].model != cot[1].model and Path(cot[0].model).name.endswith("-s0")  # one init per seed
    assert cot[0].config_hash == cot[1].config_hash and cot[0].key != cot[1].key


@pytest.mark.parametrize("path", sorted((REPO / "experiments" / "latent").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_latent_specs_resolve(path):
    spec = load_latent_spec(path)
    assert spec.tiny is not None and spec.data.task == "dial" and len(spec.seeds) == 3


# ----------------------------------------------------------------------------- running and resuming
@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The tiny spec run without interruption, in this process."""
    out = tmp_path_factory.mktemp("whole") / "run"
    summary = run_latent_sweep(parse_latent_spec(tiny_latent_spec()), out, progress=False)
    assert (summary.total, summary.ok, summary.failed) == (4, 4, 0)
    return out


def test_a_latent_sweep_killed_with_sigkill_resumes_to_the_same_records_and_aggregates(whole, write_spec,
                                                                                        tmp_path):
    spec_path = write_spec(tiny_latent_spec())
    killed = tmp_path / "killed"
    process = subprocess.Popen(SWEEP + [str(spec_path), "--out", str(killed), "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if results.is_file() and results.read_text().count("\n") >= 1:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = results.read_text().count("\n")
    assert 1 <= done_before < 4, "the sweep must be killed mid-way"
    resumed = runner.invoke(app, ["sweep", str(spec_path), "--out", str(killed), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert f"4 runs: {done_before} already done, {4 - done_before} ok, 0 failed" in resumed.output
    assert outcome(killed) == outcome(whole)
    assert aggregate(killed) == aggregate(whole)


def test_a_finished_sweep_reruns_nothing_and_records_hold_the_per_difficulty_numbers(whole):
    again = run_latent_sweep(parse_latent_spec(tiny_latent_spec()), whole, progress=False)
    assert (again.skipped, again.ok) == (4, 0)
    rows = [json.loads(line) for line in (whole / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    data = next((whole / "data").iterdir())
    difficulty = {name: [len(json.loads(line)["steps"]) for line in (data / f"{split}.jsonl").open()]
                  for name, split in (("val", "validation"), ("test", "test"))}
    for record in rows:
        assert {"label", "seed", "kind", "config_hash", "run_dir", "elapsed_s"} <= set(record)
        assert (whole / record["run_dir"] / "metrics.jsonl").is_file()
        assert record["result"]["steps"] == 4
        for name, evaluation in record["result"]["evaluations"].items():
            by_steps, counts = evaluation["by_steps"], difficulty[name]
            assert {int(s): e["n"] for s, e in by_steps.items()} == {s: counts.count(s) for s in set(counts)}
            weighted = sum(e["accuracy"] * e["n"] for e in by_steps.values()) / evaluation["n"]
            assert weighted == pytest.approx(evaluation["accuracy"])
            if evaluation["latent_thinking"]:
                steps = sum(e["latent_steps"] * e["n"] for e in by_steps.values()) / evaluation["n"]
                assert steps == pytest.approx(evaluation["latent_steps"])
    evaluated = {(r["label"], r["seed"]): set(r["result"]["evaluations"]) for r in rows}
    assert [(r["label"], r["seed"]) for r in rows] == [("CoT", 0), ("latent-2", 0), ("CoT", 1), ("latent-2", 1)]
    assert evaluated[("CoT", 1)] == {"val"} and evaluated[("latent-2", 1)] == {"val", "test"}


@pytest.mark.skipif(os.cpu_count() < 2, reason="two worker processes")
def test_two_workers_give_the_records_of_one(whole, tmp_path):
    summary = run_latent_sweep(parse_latent_spec(tiny_latent_spec()), tmp_path / "pool", workers=2, progress=False)
    assert (summary.ok, summary.failed) == (4, 0)
    assert outcome(tmp_path / "pool") == outcome(whole)


def test_grpo_runs_after_its_start_run_and_stores_the_start_models_numbers(tmp_path):
    data = tiny_latent_spec(seeds=[0], runs=tiny_latent_spec()["runs"][1:] + [GRPO_ENTRY])
    summary = run_latent_sweep(parse_latent_spec(data), tmp_path / "run", progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    sft, grpo = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert (sft["kind"], grpo["kind"], grpo["from"], grpo["from_key"]) == ("sft", "grpo", "latent-2", sft["key"])
    # The start model is the SFT run's export, evaluated the same way: "before" equals the SFT run's result.
    assert grpo["result"]["start"]["val"] == sft["result"]["evaluations"]["val"]
    assert set(grpo["result"]["start"]) == set(grpo["result"]["evaluations"]) == {"val"}
    report = runner.invoke(app, ["report", str(tmp_path / "run"), "--no-figures"])
    assert report.exit_code == 0, report.output
    assert "### Before / after RL (val)" in report.output and "| latent-2+RL | before |" in report.output


def test_a_run_whose_start_run_failed_is_recorded_failed_and_retried_with_it(tmp_path, monkeypatch):
    data = tiny_latent_spec(seeds=[0], runs=tiny_latent_spec()["runs"][1:] + [GRPO_ENTRY])

    def broken(task):
        raise RuntimeError("diverged")

    monkeypatch.setitem(latent_runner.TRAINERS, "sft", broken)
    summary = run_latent_sweep(parse_latent_spec(data), tmp_path / "run", progress=False)
    assert (summary.ok, summary.failed) == (0, 2)
    errors = {r["label"]: r["error"] for r in RunStore(tmp_path / "run").latest().values()}
    assert errors == {"latent-2": "RuntimeError: diverged",
                      "latent-2+RL": "its start run 'latent-2' (seed 0) failed"}
    monkeypatch.undo()
    again = run_latent_sweep(parse_latent_spec(data), tmp_path / "run", progress=False, retry_failed=True)
    assert (again.ok, again.failed) == (2, 0)


def test_a_changed_entry_is_re_keyed_into_a_new_folder_and_reports_count_only_the_current_runs(tmp_path, caplog):
    first = tiny_latent_spec(seeds=[0], runs=tiny_latent_spec()["runs"][:1])
    run_latent_sweep(parse_latent_spec(first), tmp_path / "run", progress=False)
    changed = copy.deepcopy(first)
    changed["runs"][0]["train"] = changed["runs"][0]["train"].replace("steps_4", "steps_3")
    with caplog.at_level(logging.WARNING):
        summary = run_latent_sweep(parse_latent_spec(changed), tmp_path / "run", progress=False)
    assert (summary.total, summary.skipped, summary.ok) == (1, 0, 1)
    assert "entries ['CoT'] changed" in caplog.text
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len({r["key"] for r in records}) == 2 and len({r["run_dir"] for r in records}) == 2
    rows, failed, left_out = load_latent_runs(RunStore(tmp_path / "run"))
    assert [(r.label, r.steps) for r in rows] == [("CoT", 3)] and (failed, left_out) == ([], 1)


def test_a_latent_sweep_into_an_inversion_folder_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "spec.json").write_text(json.dumps({"name": "inversion", "methods": []}))
    with pytest.raises(ValueError, match="holds an inversion sweep"):
        run_latent_sweep(parse_latent_spec(tiny_latent_spec()), tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "data").exists()


def test_an_sft_entry_with_from_trains_from_that_entrys_model(tmp_path):
    latent = {**tiny_latent_spec()["runs"][1], "label": "latent-2 from CoT", "from": "CoT"}
    latent.pop("eval")
    data = tiny_latent_spec(seeds=[0], runs=[COT, latent])
    summary = run_latent_sweep(parse_latent_spec(data), tmp_path / "run", progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    cot, child = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert (child["kind"], child["from"], child["from_key"]) == ("sft", "CoT", cot["key"])
    config = json.loads((tmp_path / "run" / child["run_dir"] / "config.json").read_text())
    cot_config = json.loads((tmp_path / "run" / cot["run_dir"] / "config.json").read_text())
    assert config["options"]["model"] == str((tmp_path / "run" / cot["run_dir"] / "final").resolve())
    assert config["provenance"]["model"] != cot_config["provenance"]["model"]  # trained weights, not the init


def test_only_runs_the_named_entries_with_their_start_runs_and_a_bad_label_is_one_line(tmp_path):
    latent = {**tiny_latent_spec()["runs"][1], "label": "latent-2 from CoT", "from": "CoT"}
    spec = parse_latent_spec(tiny_latent_spec(seeds=[0], runs=[COT, tiny_latent_spec()["runs"][1], latent]))
    with pytest.raises(ValueError, match="--only: no entry labelled 'latent-9'"):
        run_latent_sweep(spec, tmp_path / "run", progress=False, only=["latent-9"])
    assert not (tmp_path / "run").exists()
    summary = run_latent_sweep(spec, tmp_path / "run", progress=False, only=["latent-2 from CoT"])
    assert (summary.total, summary.ok, summary.failed) == (2, 2, 0)
    assert sorted(r["label"] for r in RunStore(tmp_path / "run").latest().values()) == ["CoT", "latent-2 from CoT"]
    rest = run_latent_sweep(spec, tmp_path / "run", progress=False)
    assert (rest.total, rest.skipped, rest.ok) == (3, 2, 1)


def test_a_start_run_whose_export_is_gone_is_trained_again_for_its_child_and_only_then(tmp_path):
    latent = {**tiny_latent_spec()["runs"][1], "label": "latent-2 from CoT", "from": "CoT"}
    spec = parse_latent_spec(tiny_latent_spec(seeds=[0], runs=[COT, latent]))
    run_latent_sweep(spec, tmp_path / "run", progress=False, only=["CoT"])
    cot = next(iter(RunStore(tmp_path / "run").latest().values()))
    shutil.rmtree(tmp_path / "run" / "runs")  # a fresh work tree: records in git, weights not
    summary = run_latent_sweep(spec, tmp_path / "run", progress=False)
    assert (summary.ok, summary.failed) == (2, 0)
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == ["CoT", "CoT", "latent-2 from CoT"]
    assert records[1]["result"]["evaluations"] == cot["result"]["evaluations"]  # the same seed retrains the same model
    again = run_latent_sweep(spec, tmp_path / "run", progress=False)
    assert (again.skipped, again.ok) == (2, 0)


def test_a_failed_start_run_is_not_rerun_for_a_child_added_later(tmp_path, monkeypatch):
    latent = {**tiny_latent_spec()["runs"][1], "label": "latent-2 from CoT", "from": "CoT"}
    spec = parse_latent_spec(tiny_latent_spec(seeds=[0], runs=[COT, latent]))
    monkeypatch.setitem(latent_runner.TRAINERS, "sft", lambda task: (_ for _ in ()).throw(RuntimeError("diverged")))
    run_latent_sweep(spec, tmp_path / "run", progress=False, only=["CoT"])
    monkeypatch.undo()
    summary = run_latent_sweep(spec, tmp_path / "run", progress=False)
    assert (summary.ok, summary.failed) == (0, 1)
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [(r["label"], r["status"]) for r in records] == [("CoT", "failed"), ("latent-2 from CoT", "failed")]
