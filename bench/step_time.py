"""Seconds per DLMI step on the embedded model: batch 8, target 20, prompt 10 and 80, TF and free-running.

Per-step time is (t(1 + N) - t(1)) / N after a warm-up run, so model set-up and the final evaluation
cancel out; evaluation during the run is off.

Usage: python bench/step_time.py [--steps 3] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path

import torch

from softtoken.lm.softlm import as_softlm
from softtoken.methods import DLMI, Budget, Problem, dlmi_paper


def run_seconds(config, problem: Problem, steps: int) -> float:
    start = time.perf_counter()
    DLMI(config).run(problem, Budget(steps=steps))
    return time.perf_counter() - start


def time_per_step(lm, config, prompt_length: int, target: tuple[int, ...], steps: int) -> float:
    """(t(1 + N steps) - t(1 step)) / N after a warm-up run, so set-up and final evaluation cancel out."""
    config = dataclasses.replace(config, eval_every=10_000)
    problem = Problem(lm=lm, target_ids=target, prompt_length=prompt_length, seed=0)
    run_seconds(config, problem, 1)
    return (run_seconds(config, problem, 1 + steps) - run_seconds(config, problem, 1)) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lm = as_softlm(None)
    text = " Paris is the capital and most populous city of France, with an estimated population of more than two million residents"
    target = tuple(lm.encode(text))[:20]
    if len(target) != 20:
        raise ValueError(f"benchmark target must have 20 tokens, got {len(target)}")
    rows = []
    for prompt_length in (10, 80):
        for mode, config in (("teacher-forced", dlmi_paper()), ("free-running", dataclasses.replace(dlmi_paper(), teacher_forcing=False))):
            seconds = time_per_step(lm, config, prompt_length, target, args.steps)
            rows.append({"prompt_length": prompt_length, "target_length": len(target), "batch": 8, "mode": mode,
                         "seconds_per_step": round(seconds, 3)})
            print(f"| {prompt_length} | {len(target)} | 8 | {mode} | {seconds:.2f} |", flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine()}
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "info": info}, indent=2))


if __name__ == "__main__":
    main()
