"""Per-op profile of one `dlmi-paper` step (docs/benchmarks.md §5): profile a run of 1 + N steps and one of
1 step, subtract, divide by N, so set-up and the final evaluation cancel.

Usage: python bench/screens/profile_step.py LENGTH DTYPE [compile]     e.g. 10 bfloat16 compile
"""

import dataclasses
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from softtoken.lm.softlm import as_softlm
from softtoken.methods import DLMI, Budget, Problem, dlmi_paper

TARGET_TEXT = (" Paris is the capital and most populous city of France, with an estimated population of"
               " more than two million residents")  # bench/step_speed.py's target
STEPS = 8

lm = as_softlm(None)
target = tuple(lm.encode(TARGET_TEXT)[:20])
length, dtype = int(sys.argv[1]), sys.argv[2]
config = dataclasses.replace(dlmi_paper(), compute_dtype=dtype, eval_every=10_000, compile_model="compile" in sys.argv)
problem = Problem(lm=lm, target_ids=target, prompt_length=length, seed=0)
DLMI(config).run(problem, Budget(steps=2))  # warm-up (and compile)


def profiled(steps: int) -> tuple[float, dict[str, tuple[float, int]]]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        DLMI(config).run(problem, Budget(steps=steps))
        wall = time.perf_counter() - start
    return wall, {e.key: (e.self_cpu_time_total, e.count) for e in prof.key_averages()}


wall_one, one = profiled(1)
wall_many, many = profiled(1 + STEPS)
rows = sorted((((many[k][0] - one.get(k, (0, 0))[0]) / STEPS / 1e3, (many[k][1] - one.get(k, (0, 0))[1]) / STEPS, k)
               for k in many), reverse=True)
print(f"L={length} {dtype} compile={config.compile_model}: {(wall_many - wall_one) / STEPS:.3f} s per step under the "
      f"profiler, {sum(r[0] for r in rows):.0f} ms of op self time")
for ms, calls, name in rows[:20]:
    print(f"{ms:8.2f} ms {calls:7.1f} calls  {name}")
