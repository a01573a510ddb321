"""Run a latent sweep into a run directory: lock, write the data and tiny models once, skip finished keys,
run the rest in dependency order, append one record per run to the same store as inversion sweeps.

    RUN_DIR/data/<fingerprint>/        a generated data set (train/validation/test .jsonl)
    RUN_DIR/models/tiny-<hash>-s<seed>/ a seed's random tiny model
    RUN_DIR/runs/<label>-<hash>/seed_<seed>/   one run: config.json, checkpoints, metrics.jsonl, final/
    RUN_DIR/spec.json                   the resolved spec and the keys of its runs (reports read only those)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from softtoken.experiments.backends import LocalBackend
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.latent_runner import (
    LatentTask,
    execute_latent_task,
    expand_latent_tasks,
    failed_latent_record,
)
from softtoken.experiments.latent_spec import LatentSweepSpec, digest
from softtoken.experiments.runner import SweepSummary, drive, pending_tasks
from softtoken.experiments.store import SPEC, RunStore, saved_spec, sweep_kind
from softtoken.latent.runs import task_splits, write_task_data

logger = logging.getLogger(__name__)


def _write_once(path: Path, write: Callable[[Path], Any]) -> str:
    """`write(tmp)` then rename to `path`, unless `path` exists: a kill never leaves a half-written folder."""
    if not path.is_dir():
        tmp = path.with_name(path.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        write(tmp)
        tmp.rename(path)
    return str(path)


def prepare_data(spec: LatentSweepSpec, root: Path) -> str:
    """The data directory: the spec's, or the generated set (written on the first run of the sweep)."""
    data = spec.data
    if data.path is not None:
        return data.path
    splits = task_splits(data.task, data.sizes, data.options, data.seed)
    return _write_once(root / "data" / data.fingerprint(), lambda tmp: write_task_data(tmp, data.task, splits))


def prepare_models(spec: LatentSweepSpec, root: Path) -> dict[int, str | None]:
    """{seed: start model}: the spec's model for every seed, or a tiny model initialised from each seed."""
    if spec.tiny is None:
        return {seed: spec.model for seed in spec.seeds}
    from softtoken.latent.tiny import save_tiny_model

    tiny = asdict(spec.tiny)
    name = digest(tiny)[:8]
    return {seed: _write_once(root / "models" / f"tiny-{name}-s{seed}",
                              lambda tmp, seed=seed: save_tiny_model(tmp, seed=seed, **tiny))
            for seed in spec.seeds}


def prepare_latent(spec: LatentSweepSpec, store: RunStore) -> list[LatentTask]:
    """Write the data, the models and spec.json; return every task. The caller holds the store for writing."""
    root = store.root.resolve()
    if saved_spec(root) and sweep_kind(root) != "latent":
        raise ValueError(f"{root} holds an inversion sweep; use a new --out for the latent one")
    tasks = expand_latent_tasks(spec, root, prepare_models(spec, root), prepare_data(spec, root))
    resolved = {**json.loads(json.dumps(asdict(spec), default=str)), "keys": [task.key for task in tasks]}
    changed = sorted({key.split("/", 3)[3] for key in set(saved_spec(root).get("keys", [])) - set(resolved["keys"])})
    if changed:
        logger.warning("%s: entries %s changed (or left the spec) since this directory was run; changed runs "
                       "get new keys and folders, and reports show only the runs of this spec", root, changed)
    write_json_atomic(root / SPEC, resolved)
    return tasks


def in_dependency_order(tasks: Sequence[LatentTask], store: RunStore, backend: LocalBackend
                        ) -> Iterator[dict[str, Any]]:
    """Records of `tasks`, in the order they finish: a run starts once its start run's record is ok (a
    seed's GRPO need not wait for the other seeds' SFT), and a run whose start run failed is recorded
    as failed without running. The driver appends each record as it comes."""
    latest = store.latest()

    def stored_ok(key: str) -> bool:
        return key in latest and latest[key]["status"] == "ok"

    def blocked(task: LatentTask) -> dict[str, Any]:
        return failed_latent_record(task, f"its start run {task.parent_label!r} (seed {task.seed}) failed")

    yield from backend.run_dependent(tasks, execute_latent_task, blocked, stored_ok)


def with_ancestors(spec: LatentSweepSpec, labels: Sequence[str]) -> set[str]:
    """`labels` and every entry they start from, directly or not; an unknown label is a one-line error."""
    entries = {point.entry.label: point.entry for point in spec.points}
    unknown = [label for label in labels if label not in entries]
    if unknown:
        raise ValueError(f"--only: no entry labelled {', '.join(map(repr, unknown))} in the spec "
                         f"(entries: {', '.join(entries)})")
    chosen, stack = set(), list(labels)
    while stack:
        label = stack.pop()
        if label not in chosen:
            chosen.add(label)
            stack.extend([entries[label].parent] if entries[label].parent else [])
    return chosen


def with_lost_parents(todo: Sequence[LatentTask], tasks: Sequence[LatentTask], root: Path,
                      ok_keys: set[str]) -> list[LatentTask]:
    """`todo` plus every run finished ok (`ok_keys`) whose export is gone (the store keeps records, not
    weights, across work trees) and that a run of `todo` starts from, directly or not; in the order of
    `tasks`. A failed start run stays failed: its children are blocked, as without this."""
    by_key = {task.key: task for task in tasks}
    needed, stack = {task.key for task in todo}, [task.parent_key for task in todo]
    while stack:
        key = stack.pop()
        if key is None or key in needed:
            continue
        parent = by_key[key]
        if key in ok_keys and not (root / parent.run_dir / "final").is_dir():
            logger.warning("%s: the export of %s (seed %d) is gone; running it again for the runs that start from it",
                           root, parent.label, parent.seed)
            needed.add(key)
            stack.append(parent.parent_key)
    return [task for task in tasks if task.key in needed]


def run_latent_sweep(spec: LatentSweepSpec, run_dir: str | Path, *, workers: int = 1, retry_failed: bool = False,
                     progress: bool = True, only: Sequence[str] | None = None) -> SweepSummary:
    """Execute every run of `spec` not yet in `run_dir`; safe to call again after a kill. `only` runs just
    those entries (and the entries they start from); the others wait for a later call.

    Raises StoreInUse, having written nothing, when another sweep is writing `run_dir`."""
    chosen = with_ancestors(spec, only) if only else None  # before the lock: a bad label leaves no trace
    backend = LocalBackend(workers=workers)
    with RunStore(run_dir).writing() as store:
        tasks = prepare_latent(spec, store)
        ok_keys = {key for key, record in store.latest().items() if record["status"] == "ok"}
        todo = with_lost_parents([task for task in pending_tasks(tasks, store, retry_failed=retry_failed)
                                  if chosen is None or task.label in chosen], tasks, store.root.resolve(), ok_keys)
        logger.info("%d runs, %d already finished, %d to run", len(tasks), len(tasks) - len(todo), len(todo))
        total = sum(chosen is None or task.label in chosen for task in tasks)
        return drive(todo, store, in_dependency_order(todo, store, backend), total=total, progress=progress)
