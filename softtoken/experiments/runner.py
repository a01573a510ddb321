"""Expand a validated spec into run tasks, execute one task, and drive a sweep into a RunStore.

A task is plain data (it crosses process and Ray boundaries); `execute_task` rebuilds the method from
(method, preset, options), seeds the run from its key and never raises: a failing run becomes a
record with status "failed" and its error, and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from softtoken.data.reconstruction import ReconstructionConfig, generate_reconstruction_set, prompt_recovery_metrics
from softtoken.data.targets import RankKConfig, Target, TargetSet, generate_rank_k, load_targets
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.spec import ConfigPoint, SweepSpec, run_key, task_seed
from softtoken.experiments.store import RunStore
from softtoken.lm.frame import build_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunTask:
    """Everything one run needs, as plain values."""

    key: str
    label: str
    method: str
    preset: str | None
    options: Mapping[str, Any]
    config_hash: str
    grid_point: Mapping[str, Any]
    seed: int  # the spec seed (part of the key)
    run_seed: int  # derived from the key (with paired_seeds: from seed and target); the method's seed
    target: Mapping[str, Any]  # Target.to_dict()
    prompt_length: int
    steps: int | None
    seconds: float | None
    model: str | None
    device: str = "cpu"
    dtype: str = "float32"
    threads: int | None = None  # torch threads for this run; None: leave the process default
    forward_tokens: int | None = None  # compute budget of the run; None: unlimited
    allowed: str | None = None  # prompt vocabulary limits (SweepSpec.allowed / banned)
    banned: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand_tasks(spec: SweepSpec, points: Sequence[ConfigPoint], targets: TargetSet, *,
                 threads: int | None = None) -> list[RunTask]:
    """Runs in a fixed order (method entry, grid point, seed, target); keys must be unique."""
    tasks, seen = [], {}
    for point in points:
        for seed in point.seeds:
            for target in targets.targets:
                key = run_key(point.method, point.config_hash, seed, target.id, target.context)
                if key in seen:
                    raise ValueError(f"entries {seen[key]!r} and {point.label!r} expand to the same run {key!r}")
                seen[key] = point.label
                tasks.append(RunTask(
                    key=key, label=point.label, method=point.method, preset=point.preset,
                    options=dict(point.options), config_hash=point.config_hash, grid_point=dict(point.grid_point),
                    seed=seed, run_seed=task_seed(spec, key, seed, target.id, target.context),
                    target=target.to_dict(), prompt_length=spec.prompt_length,
                    steps=point.budget.steps, seconds=point.budget.seconds, model=spec.model, device=spec.device,
                    dtype=spec.dtype, threads=threads if threads is not None else spec.threads_per_run,
                    forward_tokens=point.budget.forward_tokens, allowed=spec.allowed, banned=spec.banned,
                ))
    return tasks


# ----------------------------------------------------------------------------- targets
def build_targets(spec: SweepSpec, run_dir: Path, load_lm) -> TargetSet:
    """Load or generate the spec's targets; generated sets are saved in run_dir and reused on resume."""
    dataset = spec.dataset
    if dataset.path is not None:
        targets = load_targets(dataset.resolved_path)
    else:
        saved = run_dir / "targets.json"
        if not saved.is_file():
            lm = load_lm()
            lm = lm.framed(build_frame(lm.tokenizer, **dataset.context, model_name=lm.name))  # e.g. chat replies
            name = spec.model or "embedded"
            if dataset.generate is not None:
                data = generate_rank_k(lm, RankKConfig(**dataset.generate), model_name=name)
            else:
                data = generate_reconstruction_set(lm, ReconstructionConfig(**dataset.reconstruction), model_name=name)
            write_json_atomic(saved, data)
        targets = load_targets(saved)
    return targets.select(list(dataset.ids) if dataset.ids else None, dataset.limit).with_context(dataset.context)


# ----------------------------------------------------------------------------- one run
_LM_CACHE: dict[tuple, Any] = {}


def cached_lm(model: str | None, device: str, dtype: str):
    from softtoken.lm.loading import load_model  # loads torch/transformers only when needed
    from softtoken.lm.softlm import SoftLM

    key = (model, device, dtype)
    if key not in _LM_CACHE:
        _LM_CACHE.clear()  # one model per worker process is enough; do not hold several
        loaded = load_model(model, device=device, dtype=dtype)
        _LM_CACHE[key] = SoftLM(loaded.model, loaded.tokenizer)
    return _LM_CACHE[key]


def _base_record(task: RunTask) -> dict[str, Any]:
    return {"key": task.key, "label": task.label, "method": task.method, "config_hash": task.config_hash,
            "grid_point": dict(task.grid_point), "seed": task.seed, "run_seed": task.run_seed,
            "target_id": task.target["id"], "target_k": task.target.get("k"), "prompt_length": task.prompt_length}


def execute_task(task: RunTask | Mapping[str, Any], lm=None) -> dict[str, Any]:
    """Run one task; return its record (with `history`), status "ok" or "failed" with the error."""
    import torch

    from softtoken.methods import Budget, Problem, build_method
    from softtoken.lm.vocab import limit_vocabulary

    task = task if isinstance(task, RunTask) else RunTask(**task)
    record = _base_record(task)
    started = time.time()
    try:
        if task.threads is not None:
            torch.set_num_threads(task.threads)
        lm = limit_vocabulary(lm or cached_lm(task.model, task.device, task.dtype), task.allowed, task.banned)
        target = Target.from_dict(task.target)
        lm = lm.framed(build_frame(lm.tokenizer, **target.context, model_name=lm.name))
        runner = build_method(task.method if task.preset is None else None, task.preset, dict(task.options))
        problem = Problem(lm=lm, target_ids=target.resolve_ids(lm), prompt_length=task.prompt_length,
                          seed=task.run_seed)
        result = runner.run(problem, Budget(steps=task.steps, seconds=task.seconds, forward_tokens=task.forward_tokens))
        if target.prompt_ids is not None:
            result.metrics.update(prompt_recovery_metrics(result.prompt_ids, target.prompt_ids))
        data = result.to_dict()
        json.dumps(data)  # a value JSON cannot hold (a tensor, a numpy scalar) fails this run, not the store
        record.update(status="ok", history=data.pop("history"), result=data, error=None)
    except Exception as err:  # noqa: BLE001 - one failing run is recorded and must not stop the sweep
        logger.warning("run %s failed: %s: %s", task.key, type(err).__name__, err)
        record.update(status="failed", result=None, error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=8))
    record["finished_at"] = time.time()
    record["elapsed_s"] = record["finished_at"] - started
    return record


def failed_record(task: RunTask, error: BaseException) -> dict[str, Any]:
    """Record for a run whose worker died (no result came back)."""
    record = _base_record(task)
    record.update(status="failed", result=None, error=f"{type(error).__name__}: {error}", finished_at=time.time())
    return record


# ----------------------------------------------------------------------------- the sweep loop
@dataclass(frozen=True, kw_only=True)
class SweepSummary:
    total: int  # runs in the spec
    skipped: int  # already in the store
    ok: int
    failed: int


def pending_tasks(tasks: Sequence[RunTask], store: RunStore, *, retry_failed: bool) -> list[RunTask]:
    done = store.finished_keys(include_failed=not retry_failed)
    return [t for t in tasks if t.key not in done]


def drive(tasks: Sequence[RunTask], store: RunStore, records: Iterable[dict[str, Any]], *, total: int,
          progress: bool = True) -> SweepSummary:
    """Append every record as it arrives, with a progress bar (rate and ETA) over the pending runs."""
    from tqdm import tqdm

    ok = failed = 0
    bar = tqdm(total=len(tasks), desc="runs", unit="run", disable=not progress, dynamic_ncols=True)
    try:
        for record in records:
            store.append(record)
            ok += record["status"] == "ok"
            failed += record["status"] != "ok"
            bar.set_postfix({"ok": ok, "failed": failed}, refresh=False)
            bar.update(1)
    finally:
        bar.close()
    return SweepSummary(total=total, skipped=total - len(tasks), ok=ok, failed=failed)
