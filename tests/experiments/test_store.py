import json
import logging

from softtoken.experiments.backends import LocalBackend
from softtoken.experiments.report import load_runs, overall_table, summarize
from softtoken.experiments.spec import parse_spec
from softtoken.experiments.store import RunStore
from softtoken.experiments.sweep import run_sweep


def _record(key, status="ok"):
    result = {} if status == "ok" else None
    return {"key": key, "status": status, "label": "x", "result": result, "history": {"loss": [1.0, 0.5]}}


def test_store_appends_one_line_per_record_and_a_history_file(tmp_path):
    store = RunStore(tmp_path)
    store.open_for_writing()
    store.append(_record("a"))
    store.append(_record("b", "failed"))
    lines = store.results.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]
    first = store.latest()["a"]
    assert "history" not in first and store.history(first) == {"loss": [1.0, 0.5]}
    assert store.finished_keys() == {"a", "b"}
    assert store.finished_keys(include_failed=False) == {"a"}


def test_store_tolerates_a_torn_last_line_and_cuts_it_before_appending(tmp_path):
    store = RunStore(tmp_path)
    store.open_for_writing()
    store.append(_record("a"))
    with open(store.results, "a") as handle:
        handle.write('{"key": "b", "status": "o')  # a writer killed mid-line
    assert list(store.latest()) == ["a"]
    store.open_for_writing()
    store.append(_record("c"))
    assert list(store.latest()) == ["a", "c"]
    assert store.results.read_text().count("\n") == 2


def test_store_latest_record_of_a_key_wins(tmp_path):
    store = RunStore(tmp_path)
    store.open_for_writing()
    store.append(_record("a", "failed"))
    store.append(_record("a", "ok"))
    assert store.latest()["a"]["status"] == "ok"


def test_store_skips_json_lines_that_are_not_run_records_with_one_warning_each(tmp_path, caplog):
    store = RunStore(tmp_path)
    store.open_for_writing()
    store.append(_record("a"))
    with open(store.results, "a") as handle:
        for line in ('{"foo": 1}', "[1, 2]", '"text"', '{"key": "b", "label": "x", "status": "ok"}'):
            handle.write(line + "\n")
    store.append(_record("c", "failed"))
    with caplog.at_level(logging.WARNING, logger="softtoken.experiments.store"):
        assert list(store.latest()) == ["a", "c"]
    assert [r.getMessage() for r in caplog.records] == [
        f"{store.results}:{n}: skipping a line that is not a run record" for n in (2, 3, 4, 5)]


def test_report_and_resumed_sweep_skip_lines_that_are_not_run_records(tiny_spec, tmp_path, caplog):
    spec = parse_spec(tiny_spec(seeds=[1]))
    run_dir = tmp_path / "run"
    run_sweep(spec, run_dir, LocalBackend(), progress=False)
    before = overall_table(summarize(load_runs(RunStore(run_dir))[0]))  # text: stderr is nan with one seed
    results = run_dir / "results.jsonl"
    lines = results.read_text().splitlines(keepends=True)
    results.write_text("".join(lines[:2]) + '{"foo":1}\n' + "".join(lines[2:]) + "[1,2]\n")
    with caplog.at_level(logging.WARNING, logger="softtoken.experiments.store"):
        again = run_sweep(spec, run_dir, LocalBackend(), progress=False)
        rows, failed, _ = load_runs(RunStore(run_dir))
    assert (again.skipped, again.ok, again.failed) == (4, 0, 0)
    assert overall_table(summarize(rows)) == before and len(rows) == 4 and failed == []
    assert f"{results}:3: skipping a line that is not a run record" in caplog.messages
    assert f"{results}:6: skipping a line that is not a run record" in caplog.messages
