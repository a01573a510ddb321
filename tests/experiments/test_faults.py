"""Faults around a running sweep: its process killed under its workers, a second sweep on its folder."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from softtoken.cli_experiments import app

runner = CliRunner()
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; prctl is Linux-only")
SWEEP = [sys.executable, "-c", "from softtoken.cli_experiments import app; app()", "sweep"]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid = text[text.rindex(")") + 2:].split()[:2]  # the command name in (...) may hold spaces
    return state, int(ppid)


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited, whether or not anyone reaps it


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        stat = _stat(int(entry.name)) if entry.name.isdigit() else None
        if stat is not None and stat[1] == pid and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _long_runs(tiny_spec, **overrides) -> dict:
    """Runs that last minutes: a wall-clock budget and an epoch cap far beyond it."""
    data = tiny_spec(budget={"seconds": 600}, **overrides)
    data["methods"][0]["options"] = {**data["methods"][0]["options"], "epochs": 10**7, "eval_every": 10**6}
    return data


@linux_only
def test_workers_and_resource_tracker_exit_when_the_sweep_process_is_killed(tiny_spec, write_spec, model_dir,
                                                                           tmp_path):
    spec = write_spec(_long_runs(tiny_spec))
    process = subprocess.Popen(SWEEP + [str(spec), "--out", str(tmp_path / "run"), "--workers", "2", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    children = []
    try:
        def workers_in_a_run():  # a worker inside a run has the model's weights file mapped
            maps = [Path(f"/proc/{c}/maps").read_text() for c in _children(process.pid) if _alive(c)]
            return sum(str(model_dir) in m for m in maps) == 2

        assert _wait_until(workers_in_a_run, 180), "the two workers never started a run"
        children = _children(process.pid)  # the two workers and multiprocessing's resource tracker
        assert len(children) == 3
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _wait_until(lambda: not any(_alive(c) for c in children), 10), [c for c in children if _alive(c)]
    finally:
        process.kill()
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


@linux_only
def test_a_worker_without_prctl_polls_its_parent_and_exits_when_orphaned(tmp_path):
    script = textwrap.dedent("""
        import os, sys, time
        from softtoken.experiments import backends
        sys.platform = "darwin"  # take the portable path
        parent = os.getpid()
        child = os.fork()
        if child == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            backends._exit_with_parent(parent)
            time.sleep(120)
            os._exit(0)
        print(child, flush=True)
        time.sleep(1.0)  # let the child start polling, then orphan it
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    orphan = int(done.stdout)
    try:
        assert _wait_until(lambda: not _alive(orphan), 5)
    finally:
        if _alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@linux_only
def test_a_second_sweep_on_a_folder_in_use_is_refused_and_writes_nothing_while_reports_still_read_it(
        tiny_spec, write_spec, tmp_path):
    data = _long_runs(tiny_spec, seeds=[1])
    quick = {"label": "quick", "method": "dlmi", "budget": {"steps": 2}, "options": {"batch_size": 2}}
    data["methods"] = [quick] + data["methods"]  # four quick runs to report on, then runs that last minutes
    out = tmp_path / "run"
    first = subprocess.Popen(SWEEP + [str(write_spec(data)), "--out", str(out), "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        results = out / "results.jsonl"
        assert _wait_until(lambda: results.is_file() and results.read_text().count("\n") == 4, 180)
        first.send_signal(signal.SIGSTOP)  # it holds the folder but cannot change it while we look
        before = _snapshot(out)
        second = runner.invoke(app, ["sweep", str(write_spec(tiny_spec(seeds=[7]), "other.yaml")), "--out", str(out),
                                     "--quiet"])
        assert second.exit_code == 2
        assert second.output == f"error: {out} is in use by another sweep (pid {first.pid})\n"
        assert _snapshot(out) == before
        report = runner.invoke(app, ["report", str(out), "--no-figures"])
        assert report.exit_code == 0, report.output
        assert "| quick | 4 |" in (out / "report.md").read_text()
    finally:
        first.kill()
        first.wait()
