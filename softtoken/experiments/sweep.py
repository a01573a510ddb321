"""Run a sweep spec into a run directory: validate, lock, expand, skip finished keys, execute, append."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

from softtoken.data.reconstruction import ReconstructionConfig
from softtoken.data.targets import RankKConfig
from softtoken.experiments.carryover import carried_over
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.runner import (
    RunTask,
    SweepSummary,
    build_targets,
    cached_lm,
    drive,
    expand_tasks,
    pending_tasks,
)
from softtoken.experiments.spec import ConfigPoint, SpecError, SweepSpec, resolve_points
from softtoken.experiments.store import RunStore, sweep_kind

logger = logging.getLogger(__name__)


def validate(spec: SweepSpec) -> list[ConfigPoint]:
    """Every grid point, the model path and the dataset file; one SpecError lists all problems."""
    errors = []
    model = spec.model
    if model is not None and model.startswith((".", "/", "~")) and not Path(model).expanduser().exists():
        errors.append(f"model: path not found: {model!r}")
    path = spec.dataset.resolved_path
    if path is not None and not path.is_file():
        errors.append(f"dataset: file not found: {str(path)!r}")
    errors += _dataset_config_errors(spec)
    try:
        points = resolve_points(spec)
    except SpecError as err:
        errors += err.errors
    if errors:
        raise SpecError(errors)
    return points


def _dataset_config_errors(spec: SweepSpec) -> list[str]:
    checks = [("generate", RankKConfig, spec.dataset.generate),
              ("reconstruction", ReconstructionConfig, spec.dataset.reconstruction)]
    errors = []
    for name, cls, options in checks:
        if options is None:
            continue
        try:
            cls(**options)
        except (TypeError, ValueError) as err:
            errors.append(f"dataset.{name}: {err}")
    return errors


def prepare(spec: SweepSpec, points: Sequence[ConfigPoint], store: RunStore, *,
            threads: int | None = None) -> list[RunTask]:
    """Build the targets, save the spec and return all tasks of validated `points`; nothing runs yet.

    The caller holds the store for writing (`RunStore.writing`)."""
    run_dir = store.root
    if sweep_kind(run_dir) != "inversion":
        raise ValueError(f"{run_dir} holds a {sweep_kind(run_dir)} sweep; use a new --out for the inversion one")
    targets = build_targets(spec, run_dir, lambda: cached_lm(spec.model, spec.device, spec.dtype))
    tasks = expand_tasks(spec, points, targets, threads=threads)
    resolved = json.loads(json.dumps(asdict(spec), default=list))
    saved = run_dir / "spec.json"
    if saved.is_file() and json.loads(saved.read_text()) != resolved:
        logger.warning("%s: the spec differs from the one this directory was run with; the store will hold "
                       "runs of both (their keys differ where the configs differ)", run_dir)
    write_json_atomic(saved, resolved)
    return tasks


def run_sweep(spec: SweepSpec, run_dir: str | Path, backend, *, retry_failed: bool = False, progress: bool = True,
              threads: int | None = None) -> SweepSummary:
    """Execute every run of `spec` not yet in `run_dir`; safe to call again after a kill.

    Raises StoreInUse, having written nothing, when another sweep is writing `run_dir`."""
    points = validate(spec)  # before the lock: an invalid spec leaves no trace
    with RunStore(run_dir).writing() as store:
        tasks = prepare(spec, points, store, threads=threads)
        todo = pending_tasks(tasks, store, retry_failed=retry_failed)
        carried = carried_over(todo, points, spec, store)
        if carried:
            logger.info("%d runs finished under an older key (their config class gained fields since, at their "
                        "defaults): kept", len(carried))
        todo = [task for task in todo if task.key not in carried]
        logger.info("%d runs, %d already finished, %d to run", len(tasks), len(tasks) - len(todo), len(todo))
        return drive(todo, store, backend.run(todo), total=len(tasks), progress=progress)


def with_overrides(spec: SweepSpec, *, model: str | None = None, dataset_path: str | None = None) -> SweepSpec:
    """Command-line overrides of the spec's model and dataset."""
    if model is not None:
        spec = replace(spec, model=model)
    if dataset_path is not None:
        spec = replace(spec, dataset=replace(spec.dataset, path=dataset_path, base_dir=".", generate=None,
                                            reconstruction=None))
    return spec
