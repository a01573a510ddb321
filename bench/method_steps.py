"""Seconds, forward tokens and backward tokens per optimisation step for every inversion method.

Embedded model, prompt length 10, target 20 tokens, each preset's own batch size. After a 1-step
warm-up, per-step time and token counts are (1 + N-step run - 1-step run) / N, which removes set-up,
the final greedy evaluation and any end-of-run scoring. GCG presets can be run at a reduced search
width (labelled).

Usage: python bench/method_steps.py [--steps 3] [--gcg-width 64] [--presets gbda soda-paper ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from softtoken.api import as_softlm
from softtoken.methods import Budget, Problem, get_method_class, get_preset, with_options

PRESETS = ("dlmi-paper", "gbda", "reinforce-paper", "reinforce", "soda-paper", "gcg", "gcg-paper-lmi")
TARGET_TEXT = (" Paris is the capital and most populous city of France, with an estimated population of two million"
               " one hundred thousand residents in the city proper.")


def run(preset: str, options: dict, problem: Problem, steps: int):
    method, config = get_preset(preset)
    runner = get_method_class(method)(with_options(config, options))
    start = time.perf_counter()
    result = runner.run(problem, Budget(steps=steps))
    return time.perf_counter() - start, result


def measure(preset: str, problem: Problem, steps: int, gcg_width: int | None) -> dict:
    """One row: per-step seconds and token counts of `preset`, as differences between a 1 + N and a 1-step run."""
    options = {"eval_every": 100_000}
    if preset.startswith("gcg") and gcg_width is not None:
        options["search_width"] = gcg_width
    run(preset, options, problem, 1)  # warm-up: first-call allocations and lazy kernels
    short_time, short = run(preset, options, problem, 1)
    long_time, long = run(preset, options, problem, 1 + steps)
    label = f"{preset} (search_width {gcg_width})" if "search_width" in options else preset
    return {
        "preset": label,
        "seconds_per_step": round((long_time - short_time) / steps, 3),
        "seconds_per_run_step": round(long_time / (1 + steps), 3),
        "forward_tokens_per_step": (long.forward_tokens - short.forward_tokens) / steps,
        "backward_tokens_per_step": (long.backward_tokens - short.backward_tokens) / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gcg-width", type=int, default=64, help="search width for GCG presets; 0 = the preset's")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lm = as_softlm(None)
    target = tuple(lm.encode(TARGET_TEXT))[:20]
    if len(target) != 20:
        raise SystemExit(f"the bench target must be 20 tokens, got {len(target)}")
    problem = Problem(lm=lm, target_ids=target, prompt_length=10, seed=0)
    rows = []
    print("| preset | s/step | s/step incl. set-up (1+N run) | forward tokens/step | backward tokens/step |",
          flush=True)
    for preset in args.presets:
        row = measure(preset, problem, args.steps, args.gcg_width or None)
        rows.append(row)
        print(f"| {row['preset']} | {row['seconds_per_step']:.2f} | {row['seconds_per_run_step']:.2f} "
              f"| {row['forward_tokens_per_step']:.0f} "
              f"| {row['backward_tokens_per_step']:.0f} |", flush=True)
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(), "target_length": len(target), "prompt_length": 10}
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "info": info}, indent=2))


if __name__ == "__main__":
    main()
