"""Latent sweep runs: a resolved spec expands into tasks (entry x seed); `execute_latent_task` trains,
evaluates and returns the run's record, and never raises (a failing run is a record with its error).

A task is plain data, so it crosses into worker processes. Its run directory lives in the sweep's
folder and is named by the entry's label, config hash and seed: rerunning a killed task resumes from
the checkpoints there (the latent training loop does), and a changed entry gets a new folder.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from softtoken.experiments.latent_spec import LatentPoint, LatentSweepSpec

logger = logging.getLogger(__name__)

RUNS = "runs"  # run directories, under the sweep's folder


@dataclass(frozen=True, kw_only=True)
class LatentTask:
    """Everything one latent run needs, as plain values."""

    key: str
    label: str
    kind: str  # "sft" or "grpo"
    seed: int
    config_hash: str
    mode: str  # "cot", "no-cot" or "latent"
    series: str | None
    k: int | None
    depth: int  # runs of one depth are independent; a GRPO run waits for the depth above
    run_dir: str  # relative to the sweep's folder
    root: str  # the sweep's folder
    model: str | None  # the start model: the spec's (a seed's tiny model) or the parent run's export
    data: str | None  # the data directory
    options: Mapping[str, str | None]  # train (with seed_<n>), latent, lora, grpo, val
    evals: Mapping[str, str]  # more evaluations of the final model, by name
    parent_key: str | None
    parent_label: str | None
    threads: int | None = None  # torch threads; None: leave the process default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def task_key(point: LatentPoint, seed: int) -> str:
    return f"{point.entry.kind}/{point.config_hash}/{seed}/{point.entry.label}"


def run_dir_name(point: LatentPoint, seed: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9._+=-]+", "_", point.entry.label).strip("_") or "run"
    return f"{RUNS}/{slug}-{point.config_hash}/seed_{seed}"


def expand_latent_tasks(spec: LatentSweepSpec, root: Path, models: Mapping[int, str | None],
                        data: str | None) -> list[LatentTask]:
    """Runs seed by seed, each seed's entries in spec order (so a sweep cut short still holds whole
    tables for its first seeds); `models` maps a seed to the spec's model for it."""
    points = {point.entry.label: point for point in spec.points}
    tasks = []
    for seed in spec.seeds:
        for point in spec.points:
            entry = point.entry
            parent = points[entry.parent] if entry.parent else None
            start = str(root / run_dir_name(parent, seed) / "final") if parent else models[seed]
            train = f"{entry.train.rstrip('/')}/seed_{seed}"
            tasks.append(LatentTask(
                key=task_key(point, seed), label=entry.label, kind=entry.kind, seed=seed,
                config_hash=point.config_hash, mode=point.mode, series=entry.series, k=point.k, depth=point.depth,
                run_dir=run_dir_name(point, seed), root=str(root), model=start, data=data,
                options={"train": train, "latent": entry.latent, "lora": entry.lora, "grpo": entry.grpo,
                         "val": entry.val},
                evals=dict(entry.evals), parent_key=task_key(parent, seed) if parent else None,
                parent_label=parent.entry.label if parent else None,
                threads=spec.threads_per_run,
            ))
    return tasks


# ----------------------------------------------------------------------------- one run
def _train_sft(task: LatentTask) -> dict[str, Any]:
    from softtoken.latent.runs import run_sft

    options = task.options
    return run_sft(train=options["train"], out=Path(task.root) / task.run_dir, evals=task.evals, model=task.model,
                   latent=options["latent"], lora=options["lora"], val=options["val"], data=task.data)


def _train_grpo(task: LatentTask) -> dict[str, Any]:
    from softtoken.latent.runs import run_grpo

    options = task.options
    return run_grpo(train=options["train"], out=Path(task.root) / task.run_dir, evals=task.evals,
                    grpo=options["grpo"], model=task.model, lora=options["lora"], latent=options["latent"],
                    val=options["val"], data=task.data)


TRAINERS = {"sft": _train_sft, "grpo": _train_grpo}


def base_record(task: LatentTask) -> dict[str, Any]:
    return {"key": task.key, "label": task.label, "kind": task.kind, "seed": task.seed,
            "config_hash": task.config_hash, "mode": task.mode, "series": task.series, "k": task.k,
            "from": task.parent_label, "from_key": task.parent_key, "run_dir": task.run_dir,
            "options": {**task.options, "eval": dict(task.evals)}}


def failed_latent_record(task: LatentTask, error: str) -> dict[str, Any]:
    """The record of a run that did not start (its start run failed)."""
    return {**base_record(task), "status": "failed", "result": None, "error": error, "finished_at": time.time()}


def execute_latent_task(task: LatentTask | Mapping[str, Any]) -> dict[str, Any]:
    """Train and evaluate one run; its record, status "ok" with the result or "failed" with the error."""
    task = task if isinstance(task, LatentTask) else LatentTask(**task)
    record = base_record(task)
    started = time.time()
    try:
        if task.threads is not None:
            import torch

            torch.set_num_threads(task.threads)
        result = TRAINERS[task.kind](task)
        result.update(steps=result["train"]["steps"], rollbacks=result["train"]["rollbacks"],
                      wall_s=time.time() - started)
        json.dumps(result)  # a value JSON cannot hold fails this run, not the store
        record.update(status="ok", result=result, error=None)
    except Exception as err:  # noqa: BLE001 - one failing run is recorded and must not stop the sweep
        logger.warning("run %s failed: %s: %s", task.key, type(err).__name__, err)
        record.update(status="failed", result=None, error=f"{type(err).__name__}: {err}",
                      traceback=traceback.format_exc(limit=8))
    record["finished_at"] = time.time()
    record["elapsed_s"] = record["finished_at"] - started
    return record

