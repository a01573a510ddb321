"""Lever screen (docs/benchmarks.md §5): dlmi-paper's stage (bf16) with 1 trajectory x 8 Gumbel samples
vs 4 trajectories x 2 samples, as an engine program.

Usage (side by side, one thread each; needs runs/bench-cpu-small/targets.json from the cpu-small bench):
    python bench/screens/trajectories_vs_samples.py 1 8 120 & python bench/screens/trajectories_vs_samples.py 4 2 120
"""
import dataclasses, json, sys, torch
torch.set_num_threads(1)
from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, Problem, dlmi_paper
from softtoken.methods.dlmi import dlmi_stage
from softtoken.methods.program import ProgramConfig, ProgramMethod
trajectories, samples, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
lm = as_softlm(None)
targets = [s for s in json.load(open("runs/bench-cpu-small/targets.json"))["samples"] if s["k_target"] == 1][:3]
stage = dlmi_stage(dataclasses.replace(dlmi_paper(), compute_dtype="bfloat16"), 10, 100_000)
fields = dataclasses.asdict(stage) | {"trajectories": trajectories, "samples": samples, "prompt_length": None}
method = ProgramMethod(ProgramConfig(stages=(fields,), eval_every=10))
for t in targets:
    r = method.run(Problem(lm=lm, target_ids=tuple(t["token_ids"]), prompt_length=10, seed=0), Budget(seconds=seconds))
    print(f"T={trajectories} S={samples}", t["id"], {k: v for k, v in r.metrics.items() if "lcs" in k or "exact" in k or "accuracy" in k},
          "steps", r.steps_run, "wall %.0f" % r.wall_time_s, repr(r.prompt_text), flush=True)
