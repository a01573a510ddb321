import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from softtoken.cli_experiments import app
from softtoken.experiments.backends import LocalBackend, RayBackend
from softtoken.experiments.report import load_runs, summarize
from softtoken.experiments.spec import config_hash, parse_spec, resolve_points, run_key
from softtoken.experiments.store import RunStore
from softtoken.experiments.sweep import run_sweep
from softtoken.methods import METHODS, NonFiniteLossError

runner = CliRunner()


def outcome(run_dir):
    """Per run key: the found prompt and the scores, i.e. everything but timings."""
    latest = RunStore(run_dir).latest()
    return {key: (r["status"], r["result"]["prompt_ids"], r["result"]["metrics"]["eval/lcs_ratio"],
                  r["result"]["metrics"]["eval/exact_match"], r["result"]["steps_run"])
            for key, r in latest.items()}


def aggregate(run_dir):
    rows, _, _ = load_runs(RunStore(run_dir))
    return {label: (s["success"], s["lcs"], s["token_accuracy"], s["n"]) for label, s in summarize(rows).items()}


def test_sweep_resumes_and_skips_finished_keys(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec())
    first = run_sweep(spec, tmp_path / "run", LocalBackend(), progress=False)
    assert (first.total, first.ok, first.failed, first.skipped) == (8, 8, 0, 0)
    again = run_sweep(spec, tmp_path / "run", LocalBackend(), progress=False)
    assert (again.ok, again.skipped) == (0, 8)
    assert len((tmp_path / "run" / "results.jsonl").read_text().splitlines()) == 8
    assert len(list((tmp_path / "run" / "histories").iterdir())) == 8


def _rewritten_as_if_older(run_dir, spec, edit):
    """Rewrite every stored run as if made by an older config class: `edit` changes its stored config, and
    its key and config hash become the ones that config had."""
    store, point = RunStore(run_dir), resolve_points(spec)[0]
    records = []
    for record in store.records():
        edit(record["result"]["config"])
        record["config_hash"] = config_hash(record["method"], record["result"]["config"], budget=point.budget,
                                            prompt_length=spec.prompt_length, model=spec.model)
        record["key"] = run_key(record["method"], record["config_hash"], record["seed"], record["target_id"])
        records.append(json.dumps(record))
    store.results.write_text("\n".join(records) + "\n")


@pytest.mark.parametrize("option, edit, reruns", [
    ({}, lambda config: config.pop("gumbel_noise_scale"), False),  # a field added since, at its default
    ({"gumbel_noise_scale": 0.5}, lambda config: config.pop("gumbel_noise_scale"), True),  # ... not at its default
    ({}, lambda config: config.update(gumbel_noise_scale=0.5), True),  # a default changed since
    ({}, lambda config: config.update(batch_size=3), True),  # another config
])
def test_a_resumed_sweep_keeps_runs_made_before_a_config_field_was_added(tiny_spec, tmp_path, option, edit, reruns):
    spec = parse_spec(tiny_spec())
    run_sweep(spec, tmp_path / "run", LocalBackend(), progress=False)
    _rewritten_as_if_older(tmp_path / "run", spec, edit)
    entry = dict(spec.methods[0].options, **option)
    resumed = parse_spec(tiny_spec(methods=[{"label": "DLMI", "method": "dlmi", "options": entry}]))
    again = run_sweep(resumed, tmp_path / "run", LocalBackend(), progress=False)
    assert (again.ok, again.skipped) == ((8, 0) if reruns else (0, 8))


def test_sweep_run_does_not_depend_on_order_or_other_targets(tiny_spec, tmp_path):
    run_sweep(parse_spec(tiny_spec()), tmp_path / "all", LocalBackend(), progress=False)
    only = tiny_spec()
    only["dataset"] = {**only["dataset"], "ids": ["t3", "t1"]}
    only["seeds"] = [2]
    run_sweep(parse_spec(only), tmp_path / "some", LocalBackend(), progress=False)
    full, subset = outcome(tmp_path / "all"), outcome(tmp_path / "some")
    assert len(subset) == 2
    assert all(full[key] == value for key, value in subset.items())


def test_a_spec_vocabulary_limit_holds_every_prompt_it_finds(tiny_spec, tiny_tokenizer, tmp_path):
    words = tmp_path / "words.txt"
    words.write_text("w5\nw6\nw9\n")
    allowed = {tiny_tokenizer.convert_tokens_to_ids(word) for word in ("w5", "w6", "w9")}
    run_sweep(parse_spec(tiny_spec(seeds=[1], allowed=str(words))), tmp_path / "limited", LocalBackend(),
              progress=False)
    run_sweep(parse_spec(tiny_spec(seeds=[1])), tmp_path / "whole", LocalBackend(), progress=False)
    limited, whole = outcome(tmp_path / "limited"), outcome(tmp_path / "whole")
    assert len(limited) == 4 and all(status == "ok" and set(ids) <= allowed for status, ids, *_ in limited.values())
    assert not set(limited) & set(whole)  # the limit is part of every run's key
    assert any(not set(ids) <= allowed for _, ids, *_ in whole.values())


@dataclass(frozen=True, kw_only=True)
class _NoConfig:
    epochs: int = 1


class _AlwaysNaN:
    name = "always_nan"
    config_class = _NoConfig

    def __init__(self, config=None):
        self.config = config or _NoConfig()

    def run(self, problem, budget=None, tracker=None):
        raise NonFiniteLossError("loss is nan at step 1")


def test_failing_run_is_recorded_with_its_error_and_the_sweep_goes_on(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "always_nan", _AlwaysNaN)
    data = tiny_spec(seeds=[1])
    data["methods"] = [{"label": "bad", "method": "always_nan"}] + data["methods"]
    summary = run_sweep(parse_spec(data), tmp_path / "run", LocalBackend(), progress=False)
    assert (summary.ok, summary.failed) == (4, 4)
    failed = [r for r in RunStore(tmp_path / "run").latest().values() if r["status"] == "failed"]
    assert {r["label"] for r in failed} == {"bad"}
    assert all(r["error"] == "NonFiniteLossError: loss is nan at step 1" for r in failed)
    again = run_sweep(parse_spec(data), tmp_path / "run", LocalBackend(), progress=False, retry_failed=True)
    assert (again.skipped, again.failed) == (4, 4)


def test_invalid_spec_fails_before_running_with_all_errors_listed(tiny_spec, write_spec, tmp_path):
    data = tiny_spec(model="/no/such/model", dataset={"generate": {"k_max": 6, "bogus": 1}})
    data["methods"] = [{"label": "A", "method": "dlmi", "grid": {"temperature": [1.0, -1.0]}},
                       {"label": "B", "method": "nope"}]
    result = runner.invoke(app, ["sweep", str(write_spec(data)), "--out", str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2
    expected = ("model: path not found", "dataset.generate:", "bogus",
                "A {'temperature': -1.0}: DLMIConfig.temperature must be", "B: unknown method 'nope'")
    for message in expected:
        assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_sweep_killed_with_sigkill_resumes_to_the_same_aggregate(tiny_spec, write_spec, tmp_path):
    spec_path = write_spec(tiny_spec(seeds=[1, 2, 3]))
    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "from softtoken.cli_experiments import app; app()", "sweep", str(spec_path),
               "--out", str(killed), "--quiet"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = killed / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if results.exists() and results.read_text().count("\n") >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = results.read_text().count("\n")
    assert 2 <= done_before < 12, "the sweep must be killed mid-way"
    resumed = runner.invoke(app, ["sweep", str(spec_path), "--out", str(killed), "--quiet"])
    assert resumed.exit_code == 0, resumed.output
    assert f"{done_before} already done" in resumed.output
    whole = runner.invoke(app, ["sweep", str(spec_path), "--out", str(tmp_path / "whole"), "--quiet"])
    assert whole.exit_code == 0, whole.output
    assert outcome(killed) == outcome(tmp_path / "whole")
    assert aggregate(killed) == aggregate(tmp_path / "whole")


def _has_ray() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


@pytest.mark.skipif(_has_ray(), reason="covered by the Ray test, which also runs the process pool")
def test_local_worker_processes_match_in_process_results(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec(seeds=[1]))
    run_sweep(spec, tmp_path / "serial", LocalBackend(), progress=False)
    run_sweep(spec, tmp_path / "pool", LocalBackend(workers=2), progress=False)
    assert outcome(tmp_path / "serial") == outcome(tmp_path / "pool")


def test_ray_backend_on_local_two_cpus_matches_local_backends(tiny_spec, tmp_path):
    pytest.importorskip("ray")
    spec = parse_spec(tiny_spec())
    run_sweep(spec, tmp_path / "serial", LocalBackend(), progress=False)
    run_sweep(spec, tmp_path / "pool", LocalBackend(workers=2), progress=False)
    summary = run_sweep(spec, tmp_path / "ray", RayBackend(local_cpus=2), progress=False)
    assert (summary.ok, summary.failed) == (8, 0)
    assert outcome(tmp_path / "ray") == outcome(tmp_path / "pool") == outcome(tmp_path / "serial")
    assert aggregate(tmp_path / "ray") == aggregate(tmp_path / "serial")


def _crash_on_first_attempt(marker_dir, task):
    """Kill the worker process the first time each run is tried; run it normally on the retry."""
    from pathlib import Path

    from softtoken.experiments.runner import execute_task

    marker = Path(marker_dir) / task["key"].replace("/", "_")
    if not marker.exists():
        marker.touch()
        os._exit(1)
    return execute_task(task)


def test_ray_backend_retries_a_run_whose_worker_died(tiny_spec, tmp_path):
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    spec = parse_spec(tiny_spec(seeds=[1]))
    run_sweep(spec, tmp_path / "serial", LocalBackend(), progress=False)
    markers = tmp_path / "markers"
    markers.mkdir()

    def crashing(task):  # a plain function: ray.remote refuses a functools.partial
        return _crash_on_first_attempt(str(markers), task)

    summary = run_sweep(spec, tmp_path / "ray", RayBackend(local_cpus=2, max_retries=1, task_function=crashing),
                        progress=False)
    assert (summary.ok, summary.failed) == (summary.total, 0) and len(list(markers.iterdir())) == summary.total
    assert outcome(tmp_path / "ray") == outcome(tmp_path / "serial")


class _TensorInMetrics(_AlwaysNaN):
    name = "tensor_metrics"

    def run(self, problem, budget=None, tracker=None):
        import torch

        from softtoken.methods import Result

        return Result(method=self.name, config={}, seed=problem.seed, target_ids=list(problem.target_ids),
                      target_text="", prompt_ids=[1], prompt_text="", output_ids=[1], output_text="",
                      metrics={"eval/lcs_ratio": torch.tensor(0.5)}, success_step=None, steps_run=1,
                      wall_time_s=0.0, forward_tokens=0, backward_tokens=0)


def test_run_whose_result_is_not_json_is_recorded_as_failed(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.setitem(METHODS, "tensor_metrics", _TensorInMetrics)
    data = tiny_spec(seeds=[1], methods=[{"label": "t", "method": "tensor_metrics"}])
    summary = run_sweep(parse_spec(data), tmp_path / "run", LocalBackend(), progress=False)
    assert (summary.ok, summary.failed) == (0, 4)
    record = next(iter(RunStore(tmp_path / "run").latest().values()))
    assert record["error"].startswith("TypeError") and "JSON" in record["error"]


def test_local_pool_stops_with_a_resumable_error_when_a_worker_dies(tiny_spec, tmp_path):
    import multiprocessing
    import threading

    from softtoken.experiments.backends import WorkerDied
    from softtoken.experiments.sweep import prepare, validate

    def kill_workers():
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)

    spec = parse_spec(tiny_spec())
    with RunStore(tmp_path / "run").writing() as store:
        tasks = prepare(spec, validate(spec), store)
    # Kill the workers while they are still starting up: no run can have finished, none may be recorded.
    timer = threading.Timer(2.0, kill_workers)
    timer.start()
    with pytest.raises(WorkerDied, match="with 8 runs unfinished; finished runs are saved"):
        list(LocalBackend(workers=2).run(tasks))
    timer.join()


def test_a_dataset_context_frames_every_run_and_keys_it(tiny_spec, tmp_path):
    spec = parse_spec(tiny_spec(seeds=[1], dataset={**tiny_spec()["dataset"], "context": {"prefix": "w1 w2 "}}))
    bare = parse_spec(tiny_spec(seeds=[1]))
    run_sweep(spec, tmp_path / "framed", LocalBackend(), progress=False)
    run_sweep(bare, tmp_path / "bare", LocalBackend(), progress=False)
    framed = RunStore(tmp_path / "framed").latest()
    assert {r["result"]["context"]["prefix_ids"] == [5, 6] for r in framed.values()} == {True}
    assert not set(framed) & set(RunStore(tmp_path / "bare").latest())  # another context, other run keys
    assert all("@" in key for key in framed)


@pytest.mark.parametrize("context, message", [({"prefx": "a"}, "unknown key"), ({"system": "s"}, "needs chat=True"),
                                              ({"template": "no slot"}, "exactly one {prompt}")])
def test_a_bad_dataset_context_is_a_spec_error(tiny_spec, context, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(tiny_spec(dataset={**tiny_spec()["dataset"], "context": context}))
