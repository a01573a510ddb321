"""Runs a store already holds under an older key: made before the method's config class gained a field.

A run key holds a hash of the full resolved config, so a field added to a config class (a new lever, off
by default) changes the key of every run of that method, and a resumed sweep would run its finished runs
again. A stored run is the task's run when it has the same method, seed, target and context; its stored
config re-hashes to its own key under the task's prompt length, budget, model and vocabulary (so those
match too); it equals the task's config on every field it has; and the task's other fields, in nested
configs too, are at their class defaults, which by this project's rule keep the behaviour from before the
field existed. A changed default
never matches: the stored config holds the old value.

    todo = [task for task in todo if task.key not in carried_over(todo, points, spec, store)]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from softtoken.experiments.spec import ConfigPoint, SweepSpec, config_hash, vocabulary_limits
from softtoken.experiments.store import RunStore


def carried_over(tasks: Sequence[Any], points: Sequence[ConfigPoint], spec: SweepSpec, store: RunStore) -> set[str]:
    """Keys of `tasks` (RunTask) whose run `store` holds, finished, under an older key."""
    by_hash = {point.config_hash: point for point in points}
    stored: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for record in store.latest().values():
        if record.get("status") == "ok" and (record.get("result") or {}).get("config") is not None:
            stored.setdefault(_without_hash(record["key"]), []).append(record)
    return {task.key for task in tasks
            if any(_same_run(by_hash[task.config_hash], spec, record)
                   for record in stored.get(_without_hash(task.key), []) if record["key"] != task.key)}


def _without_hash(key: str) -> tuple[str, str]:
    """method/hash/seed/target[@context] -> (method, seed/target[@context])."""
    method, _, rest = key.split("/", 2)
    return method, rest


def _same_run(point: ConfigPoint, spec: SweepSpec, record: Mapping[str, Any]) -> bool:
    config = record["result"]["config"]
    rehashed = config_hash(record["method"], config, prompt_length=spec.prompt_length, budget=point.budget,
                           model=spec.model, vocabulary=vocabulary_limits(spec), paired_seeds=spec.paired_seeds)
    if rehashed != record["config_hash"]:
        return False
    return _extends(_plain(config), _plain(point.config), _plain(point.defaults))


def _extends(old: Mapping[str, Any], new: Mapping[str, Any], defaults: Mapping[str, Any]) -> bool:
    """`new` is `old` plus fields at their `defaults`, in nested configs too."""
    if not set(old) <= set(new):
        return False
    for name, value in old.items():
        if isinstance(value, dict) and isinstance(new[name], dict) and isinstance(defaults.get(name), dict):
            if not _extends(value, new[name], defaults[name]):
                return False
        elif new[name] != value:
            return False
    return all(name in defaults and new[name] == defaults[name] for name in set(new) - set(old))


def _plain(value: Any) -> Any:
    """As a JSON round trip gives it back (tuples become lists), so stored and fresh configs compare."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))
