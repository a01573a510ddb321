"""LocalBackend.run_dependent: a run starts when its parent's record is ok; a failed parent blocks its subtree."""

from dataclasses import dataclass

from softtoken.experiments.backends import LocalBackend


@dataclass(frozen=True)
class Task:
    key: str
    parent_key: str | None = None
    threads: int | None = None


def run(tasks, failing=(), stored=()):
    order = []

    def execute(task):
        order.append(task.key)
        return {"key": task.key, "status": "failed" if task.key in failing else "ok"}

    records = LocalBackend(workers=1).run_dependent(
        tasks, execute, blocked=lambda task: {"key": task.key, "status": "blocked"},
        stored_ok=lambda key: key in stored)
    return [(r["key"], r["status"]) for r in records], order


TREE = [Task("a"), Task("b"), Task("a1", "a"), Task("a11", "a1"), Task("b1", "b")]


def test_children_run_right_after_their_parent():
    records, order = run(TREE)
    assert order == ["a", "a1", "a11", "b", "b1"]
    assert all(status == "ok" for _, status in records)


def test_a_failed_run_blocks_its_whole_subtree_and_nothing_else():
    records, order = run(TREE, failing={"a1"})
    assert order == ["a", "a1", "b", "b1"]
    assert dict(records) == {"a": "ok", "a1": "failed", "a11": "blocked", "b": "ok", "b1": "ok"}


def test_a_parent_outside_the_batch_is_looked_up_in_the_store():
    records, order = run([Task("c1", "c"), Task("d1", "d"), Task("d11", "d1")], stored={"c"})
    assert order == ["c1"]
    assert dict(records) == {"c1": "ok", "d1": "blocked", "d11": "blocked"}
