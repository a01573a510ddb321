"""Where runs execute: in this process, in N local worker processes, or as Ray tasks.

Each backend maps tasks to records (in completion order); the driver appends them to one store, so
results look the same whichever backend produced them.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from typing import Any

from softtoken.experiments.runner import RunTask, execute_task, failed_record

logger = logging.getLogger(__name__)


class WorkerDied(RuntimeError):
    """A local worker process died; the sweep stops and can be resumed."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _exit_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the sweep process dies, even by SIGKILL.

    An orphaned worker keeps its model (hundreds of MB) and blocks forever on a queue nobody reads; it
    also holds the multiprocessing resource tracker's pipe open, so the tracker lives on with it. On
    Linux the kernel kills the worker when the thread that started it ends (the thread that first
    iterates `LocalBackend.run`, i.e. the one driving the sweep); elsewhere a thread polls."""
    if sys.platform != "linux" or not _arm_parent_death_signal():
        threading.Thread(target=_poll_parent, args=(parent,), daemon=True, name="exit-with-parent").start()
    if os.getppid() != parent:  # the parent died before the worker got here
        os._exit(1)


def _arm_parent_death_signal() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
        return True
    logger.warning("prctl(PR_SET_PDEATHSIG) failed (%s); polling the parent instead", os.strerror(ctypes.get_errno()))
    return False


def _poll_parent(parent: int) -> None:
    while os.getppid() == parent:  # an orphan is re-parented, so its parent pid changes
        time.sleep(1.0)
    os._exit(1)


def _one_thread_unless_set(tasks: Sequence[RunTask]) -> list[RunTask]:
    # N workers on N cores: one torch thread each, or they oversubscribe the CPU.
    return [t if t.threads is not None else replace(t, threads=1) for t in tasks]


@dataclass(frozen=True, kw_only=True)
class LocalBackend:
    """`workers` = 1 runs in this process; more uses a spawn-started process pool."""

    workers: int = 1

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def run(self, tasks: Sequence[RunTask], execute: Callable[[Any], dict[str, Any]] = execute_task
            ) -> Iterator[dict[str, Any]]:
        """Records of `tasks`; `execute` (a module-level function, so workers can import it) maps a task or
        its `to_dict()` to its record: inversion runs by default, latent runs for latent sweeps."""
        if self.workers == 1 or len(tasks) <= 1:
            yield from (execute(task) for task in tasks)
            return
        tasks = _one_thread_unless_set(tasks)
        with self._pool() as pool:
            futures = {pool.submit(execute, task.to_dict()): task for task in tasks}
            for finished, future in enumerate(as_completed(futures)):
                try:
                    record = future.result()
                except BrokenProcessPool as err:
                    # Which run killed the worker is unknown, so none is recorded as failed: resuming
                    # re-runs the unfinished ones, and --workers 1 isolates a run that crashes every time.
                    raise WorkerDied(
                        f"a worker process died (killed or out of memory) with {len(futures) - finished} runs "
                        "unfinished; finished runs are saved, run the same command again to resume "
                        "(--workers 1 isolates a crashing run)") from err
                yield record


    def _pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: forking a process that already holds torch threads can deadlock.
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_exit_with_parent, initargs=(os.getpid(),))

    def run_dependent(self, tasks: Sequence[Any], execute: Callable[[Any], dict[str, Any]],
                      blocked: Callable[[Any], dict[str, Any]], stored_ok: Callable[[str], bool]
                      ) -> Iterator[dict[str, Any]]:
        """Records of `tasks` (each with `key` and `parent_key`), each task starting as soon as its parent's
        record is ok, so workers stay busy across dependency levels. A parent outside `tasks` is looked up
        with `stored_ok`. A task whose parent failed gets `blocked(task)` instead of running, and so do
        its descendants."""
        keys = {task.key for task in tasks}
        children: dict[str, list[Any]] = {}
        ready, refused = [], []
        for task in tasks:
            if task.parent_key in keys:
                children.setdefault(task.parent_key, []).append(task)
            elif task.parent_key is None or stored_ok(task.parent_key):
                ready.append(task)
            else:
                refused.append(task)
        for task in refused:
            yield from _blocked_with_descendants(task, children, blocked)
        for record in self._run_ready(ready, execute, children):
            yield record
            if record["status"] != "ok":
                for child in children.pop(record["key"], []):
                    yield from _blocked_with_descendants(child, children, blocked)

    def _run_ready(self, ready: list[Any], execute: Callable[[Any], dict[str, Any]],
                   children: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
        """Execute `ready` and, after each ok record, its children; records in completion order."""
        if self.workers == 1:
            while ready:
                record = execute(ready.pop(0))
                if record["status"] == "ok":
                    ready[:0] = children.pop(record["key"], [])
                yield record
            return
        with self._pool() as pool:
            running = {pool.submit(execute, task.to_dict()) for task in _one_thread_unless_set(ready)}
            while running:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    try:
                        record = future.result()
                    except BrokenProcessPool as err:
                        raise WorkerDied("a worker process died (killed or out of memory); finished runs are "
                                         "saved, run the same command again to resume") from err
                    if record["status"] == "ok":
                        running |= {pool.submit(execute, task.to_dict())
                                    for task in _one_thread_unless_set(children.pop(record["key"], []))}
                    yield record


def _blocked_with_descendants(task: Any, children: dict[str, list[Any]],
                              blocked: Callable[[Any], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield blocked(task)
    for child in children.pop(task.key, []):
        yield from _blocked_with_descendants(child, children, blocked)


@dataclass(frozen=True, kw_only=True)
class RayBackend:
    """Ray tasks with CPU/GPU resources and retries; `address` None starts a local Ray with `local_cpus`."""

    address: str | None = None  # e.g. "auto" or "ray://head:10001"
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0  # fractional values pack several small-model runs per GPU
    max_retries: int = 3  # re-submissions when a worker process dies
    local_cpus: int | None = None  # CPUs of a local Ray (address None); None: all
    # What each Ray task runs (a task dict -> record); swapped only to test retries after a crash.
    task_function: Callable[[Mapping[str, Any]], dict[str, Any]] = field(default=execute_task, repr=False)

    def __post_init__(self) -> None:
        if self.cpus_per_run <= 0 or self.gpus_per_run < 0 or self.max_retries < 0:
            raise ValueError(f"RayBackend needs cpus_per_run > 0, gpus_per_run >= 0, max_retries >= 0, got "
                             f"{self.cpus_per_run}, {self.gpus_per_run}, {self.max_retries}")

    def run(self, tasks: Sequence[RunTask]) -> Iterator[dict[str, Any]]:
        import ray  # optional extra

        started_here = not ray.is_initialized()
        if started_here:
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.local_cpus}
            ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
        threads = max(1, int(self.cpus_per_run))
        tasks = [t if t.threads is not None else replace(t, threads=threads) for t in tasks]
        remote = ray.remote(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                            max_retries=self.max_retries)(self.task_function)
        try:
            pending = {remote.remote(task.to_dict()): task for task in tasks}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    task = pending.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.RayError as err:
                        yield failed_record(task, err)
        finally:
            if started_here:
                ray.shutdown()


BACKENDS = {"local": LocalBackend, "ray": RayBackend}


def make_backend(name: str, **kwargs: Any):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {sorted(BACKENDS)}")
    return BACKENDS[name](**kwargs)
