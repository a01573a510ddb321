"""Lever screen (docs/benchmarks.md §5): dlmi-paper (bf16) relaxing only each position's top-k of Z,
refreshed every step. Screened as a mask on the dense relaxation: the quality effect, not the speed one.

Usage (side by side, one thread each; needs runs/bench-cpu-small/targets.json from the cpu-small bench):
    python bench/screens/topk_relaxation.py 32 120 & python bench/screens/topk_relaxation.py 256 120
"""
import dataclasses, json, sys, torch
torch.set_num_threads(1)
import softtoken.engine.stage as S
from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, Problem, dlmi_paper, DLMI
k, seconds = int(sys.argv[1]), float(sys.argv[2])
original = S.blend
def restricted_blend(logits, **kw):
    threshold = logits.detach().topk(k, dim=-1).values[..., -1:]  # (N, L, 1)
    return original(logits.masked_fill(logits.detach() < threshold, float("-inf")), **kw)
S.blend = restricted_blend
lm = as_softlm(None)
targets = [s for s in json.load(open("runs/bench-cpu-small/targets.json"))["samples"] if s["k_target"] == 1][:3]
cfg = dataclasses.replace(dlmi_paper(), compute_dtype="bfloat16")
for t in targets:
    r = DLMI(cfg).run(Problem(lm=lm, target_ids=tuple(t["token_ids"]), prompt_length=10, seed=0), Budget(seconds=seconds))
    print(f"topk={k}", t["id"], {kk: v for kk, v in r.metrics.items() if "lcs" in kk or "exact" in kk or "accuracy" in kk},
          "steps", r.steps_run, "wall %.0f" % r.wall_time_s, repr(r.prompt_text), flush=True)
