"""Lever screen (docs/benchmarks.md §5): gcg-fast from " x" * 10 vs from the model's own greedy text.

Usage (two processes side by side, one thread each; needs runs/bench-cpu-small/targets.json from the cpu-small bench):
    python bench/screens/init_from_model.py x 120 & python bench/screens/init_from_model.py model 120
"""
import json, sys, time, torch
torch.set_num_threads(1)
from softtoken.lm.softlm import as_softlm
from softtoken.methods import Budget, Problem
from softtoken.methods.gcg import GCG, gcg_fast
mode, seconds = sys.argv[1], float(sys.argv[2])
lm = as_softlm(None)
samples = json.load(open("runs/bench-cpu-small/targets.json"))["samples"]
targets = [s for s in samples if s["k_target"] == 1][:3]
L = 10
if mode == "model":
    bos = lm.tokenizer.bos_token_id if lm.tokenizer.bos_token_id is not None else lm.tokenizer.eos_token_id
    with torch.no_grad():
        ids = lm.greedy_generate(torch.tensor([[bos]]), L)[0]
    allowed = set(lm.allowed_ids.tolist())
    x = lm.encode(" x")[0]
    ids = [i if i in allowed else x for i in ids.tolist()]
    print("init", repr(lm.decode(ids)), flush=True)
    index = torch.searchsorted(lm.allowed_ids, torch.tensor(ids))
    GCG._init = lambda self, run, objective: index.clone()
for t in targets:
    ids = t["token_ids"]
    start = time.perf_counter()
    r = GCG(gcg_fast()).run(Problem(lm=lm, target_ids=tuple(ids), prompt_length=L, seed=0), Budget(seconds=seconds))
    print(mode, t["id"], {k: v for k, v in r.metrics.items() if "lcs" in k or "exact" in k or "accuracy" in k},
          "steps", r.steps_run, "success_step", r.success_step, "wall %.0f" % r.wall_time_s, repr(r.prompt_text), flush=True)
