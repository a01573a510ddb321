import json

from softtoken.experiments.store import RunStore


def _record(key, status="ok"):
    return {"key": key, "status": status, "label": "x", "history": {"loss": [1.0, 0.5]}}


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
