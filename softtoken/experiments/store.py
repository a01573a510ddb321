"""The result store of a sweep directory: one JSON line per finished run, per-run history files.

    RUN_DIR/results.jsonl          one record per finished (or failed) run, appended atomically
    RUN_DIR/histories/<run>.json   that run's per-step history
    RUN_DIR/spec.json              the resolved spec, for reports
    RUN_DIR/targets.json           the target set the runs used
    RUN_DIR/.lock                  flock'd by the one writer (a sweep) for its life; holds its pid

A record is appended with one os.write on an O_APPEND descriptor, then fsync'd: concurrent appends do
not interleave and a kill leaves at most one torn last line, which reading skips and opening for
writing cuts off. Readers (reports) take no lock: they only ever see whole lines.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from softtoken.experiments.files import write_json_atomic

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
HISTORIES = "histories"
LOCK = ".lock"
SPEC = "spec.json"


class StoreInUse(RuntimeError):
    """Another process is writing this run directory."""


def history_name(key: str) -> str:
    return f"{HISTORIES}/{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def saved_spec(root: str | Path) -> dict[str, Any]:
    """The spec a sweep saved in its directory ({} when there is none)."""
    path = Path(root) / SPEC
    return json.loads(path.read_text()) if path.is_file() else {}


def sweep_kind(root: str | Path) -> str:
    """"latent" for a latent sweep's directory (its spec says so), else "inversion"."""
    return saved_spec(root).get("kind", "inversion")


def is_run_record(value: Any) -> bool:
    """What readers rely on: an object with a string key and label, a status, and a result object when ok."""
    if not (isinstance(value, dict) and isinstance(value.get("key"), str) and isinstance(value.get("label"), str)):
        return False
    status = value.get("status")
    return status == "failed" or (status == "ok" and isinstance(value.get("result"), dict))


class RunStore:
    """Append-only JSONL results plus history files under one directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.results = self.root / RESULTS

    @contextmanager
    def writing(self) -> Iterator[RunStore]:
        """Hold the directory's writer lock while the block runs, and open the store for writing.

        Two sweeps on one directory would compute every run twice; the second is refused instead. The
        kernel drops the lock when its holder dies, even by SIGKILL, so a stale lock never blocks a resume."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                raise StoreInUse(f"{self.root} is in use by another sweep (pid {holder})") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            self.open_for_writing()
            yield self
        finally:
            os.close(fd)  # releases the lock

    def open_for_writing(self) -> None:
        """Create the directory and cut a torn last line left by a killed writer."""
        (self.root / HISTORIES).mkdir(parents=True, exist_ok=True)
        if not self.results.exists():
            return
        data = self.results.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            logger.warning("%s: dropping a torn last line (%d bytes)", self.results, len(data) - keep)
            with open(self.results, "r+b") as handle:
                handle.truncate(keep)
                os.fsync(handle.fileno())

    def append(self, record: Mapping[str, Any]) -> None:
        """Write the history file (if any) first, then the record line: a listed run always has its history."""
        record = dict(record)
        history = record.pop("history", None)
        if history is not None:
            record["history_file"] = history_name(record["key"])
            write_json_atomic(self.root / record["history_file"], history)
        line = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
        fd = os.open(self.results, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise OSError(f"short write to {self.results}: {written} of {len(line)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every run record in file order; a line that is not one is skipped with a warning naming it."""
        if not self.results.exists():
            return
        with open(self.results, encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    logger.warning("%s:%d: skipping an unreadable (torn) line", self.results, number)
                    continue
                if is_run_record(record):
                    yield record
                else:
                    logger.warning("%s:%d: skipping a line that is not a run record", self.results, number)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last record of each run key."""
        return {record["key"]: record for record in self.records()}

    def finished_keys(self, *, include_failed: bool = True) -> set[str]:
        return {k for k, r in self.latest().items() if include_failed or r.get("status") == "ok"}

    def history(self, record: Mapping[str, Any]) -> dict[str, list]:
        name = record.get("history_file")
        if not name or not (self.root / name).is_file():
            return {}
        return json.loads((self.root / name).read_text())
