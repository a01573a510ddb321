"""Many targets with the model loaded once: one result line per target as it finishes, resumable; or one
universal prompt for all of them.

    OUT/run.json        what every target of the run shares (method, model, budget, context, ...): a
                        resume with anything else is refused before any work
    OUT/results.jsonl   one record per finished target (the sweep store's format), appended atomically
    OUT/histories/      each target's history

A target's own context fields (prefix, suffix, template, chat, system) override the run's, field by field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from softtoken.data.targets import CONTEXT_KEYS, Target, TargetSet
from softtoken.experiments.files import write_json_atomic
from softtoken.experiments.store import RunStore
from softtoken.lm.frame import Frame, FramedTarget, build_frame
from softtoken.lm.softlm import SoftLM
from softtoken.methods import Budget, Problem, Result

RUN_FILE = "run.json"


@dataclass(frozen=True, kw_only=True)
class BatchRun:
    """What the targets of one run share; `identity` is what a resume must match (plain JSON values)."""

    prompt_length: int = 10
    seed: int = 0
    budget: Budget = field(default_factory=Budget)
    context: Mapping[str, Any] = field(default_factory=dict)  # the run's frame options (CONTEXT_KEYS)
    identity: Mapping[str, Any] = field(default_factory=dict)  # method, model, options, ...: a resume must match

    def __post_init__(self) -> None:
        unknown = sorted(set(self.context) - set(CONTEXT_KEYS))
        if unknown:
            raise ValueError(f"unknown context option(s) {unknown}; valid: {list(CONTEXT_KEYS)}")

    def frame(self, lm: SoftLM, target: Target, *, model_name: str = "the model") -> Frame:
        """The target's frame: its own context fields over the run's."""
        options = {**self.context, **target.context}
        return build_frame(lm.tokenizer, **options, model_name=model_name)

    def record_identity(self) -> dict[str, Any]:
        budget = {"steps": self.budget.steps, "seconds": self.budget.seconds,
                  "forward_tokens": self.budget.forward_tokens}
        return {"prompt_length": self.prompt_length, "seed": self.seed, "budget": budget,
                "context": dict(self.context), **self.identity}


def check_same_run(out: Path, identity: Mapping[str, Any]) -> None:
    """Write OUT/run.json on the first start; refuse a resume whose run differs, naming the first difference."""
    path = out / RUN_FILE
    if not path.is_file():
        write_json_atomic(path, dict(identity))
        return
    stored = json.loads(path.read_text())
    for key in sorted(set(stored) | set(identity)):
        if stored.get(key) != identity.get(key):
            raise ValueError(f"{out} holds another run ({key} was {stored.get(key)!r}, now {identity.get(key)!r}); "
                             f"use a new --out or the same options")


def invert_targets(lm: SoftLM, runner: Any, targets: TargetSet, run: BatchRun, *, out: Path | None = None,
                   model_name: str = "the model", on_result: Callable[[Target, Result | None, str], None] | None = None,
                   tracker_factory: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """Invert every target; with `out`, append each finished one to OUT/results.jsonl and skip those already
    there (a resume). -> the records of all targets, in target order (finished earlier or now)."""
    frames = {t.id: run.frame(lm, t, model_name=model_name) for t in targets.targets}  # bad context: fail first
    if out is None:
        return [_invert_one(lm, runner, t, frames[t.id], run, tracker_factory, on_result) for t in targets.targets]
    store = RunStore(out)
    with store.writing():
        check_same_run(out, run.record_identity())
        done = store.latest()
        records = []
        for target in targets.targets:
            if target.id in done:
                records.append(done[target.id])
                continue
            record = _invert_one(lm, runner, target, frames[target.id], run, tracker_factory, on_result)
            store.append(record)
            records.append({k: v for k, v in record.items() if k != "history"})
    return records


def _invert_one(lm: SoftLM, runner: Any, target: Target, frame: Frame, run: BatchRun,
                tracker_factory: Callable[[], Any] | None,
                on_result: Callable[[Target, Result | None, str], None] | None) -> dict[str, Any]:
    """One target's record: ok with its result and history, or failed with the one-line reason."""
    framed = lm.framed(frame)
    tracker = tracker_factory() if tracker_factory is not None else None
    try:
        problem = Problem(lm=framed, target_ids=target.resolve_ids(framed), prompt_length=run.prompt_length,
                          seed=run.seed)
        result = runner.run(problem, run.budget, tracker)
    except (ValueError, FloatingPointError) as err:
        if on_result is not None:
            on_result(target, None, str(err))
        return {"key": target.id, "label": runner.name, "status": "failed", "error": str(err).splitlines()[0]}
    finally:
        if tracker is not None:
            tracker.close()
    if on_result is not None:
        on_result(target, result, "")
    data = result.to_dict()
    return {"key": target.id, "label": runner.name, "status": "ok", "target": target.to_dict(),
            "history": data.pop("history"), "result": data}


def universal_problem(lm: SoftLM, targets: TargetSet, run: BatchRun, *, model_name: str = "the model") -> Problem:
    """One prompt for every target, each in its own frame."""
    framed = []
    for target in targets.targets:
        frame = run.frame(lm, target, model_name=model_name)
        framed.append(FramedTarget(tuple(target.resolve_ids(lm.framed(frame))), frame))
    return Problem(lm=lm, prompt_length=run.prompt_length, seed=run.seed, universal=tuple(framed))


def summary_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """Rows of the end-of-run table: target, exact, LCS, steps, seconds, prompt (or the failure)."""
    rows = []
    for record in records:
        if record.get("status") != "ok":
            rows.append([record["key"], "failed", "", "", "", record.get("error", "")])
            continue
        result = record["result"]
        rows.append([record["key"], "yes" if result["metrics"]["eval/exact_match"] else "no",
                     f"{result['metrics']['eval/lcs_ratio']:.2f}", str(result["steps_run"]),
                     f"{result['wall_time_s']:.1f}", repr(result["prompt_text"])])
    return rows
