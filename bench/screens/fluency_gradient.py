"""How large the fluency prior's gradient is against the target loss's (issue 12, docs/benchmarks.md §6, screen 22):
the norms and largest entries of the two gradients of four random relaxed 10-token prompts on natural_05's target,
at ADC's dense start (softmax of N(0, 1) logits) and with every row cut to its 3 largest entries, as after ADC's
first steps. The ratio of the norms sets the scale of `fluency_weight`.

Usage: python bench/screens/fluency_gradient.py [--threads 1]
"""

from __future__ import annotations

import json

import torch
from timing import thread_args  # bench/screens/timing.py, next to this script

from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import project_top_s
from softtoken.objectives import ObjectiveContext, TargetCE

TARGETS = "bench/results/screen-budget-720/targets.json"
args = thread_args(__doc__)
lm = as_softlm(None)
sample = {entry["id"]: entry for entry in json.load(open(TARGETS))["samples"]}["natural_05"]
context = ObjectiveContext(target_ids=tuple(sample["target_output_tokens"]))
generator = torch.Generator().manual_seed(0)
dense = torch.softmax(torch.randn(4, 10, lm.prompt_vocab_size, generator=generator), -1)
for name, start in {"dense start": dense, "3 tokens a row": project_top_s(dense, torch.full((4,), 3))}.items():
    relaxed = start.clone().requires_grad_(True)
    target_loss, _, fluency = TargetCE().loss_predictions_and_fluency(lm, relaxed, context)
    target_grad, = torch.autograd.grad(target_loss.mean(), relaxed, retain_graph=True)
    fluency_grad, = torch.autograd.grad(fluency.mean(), relaxed)
    print(f"{name}: target loss {target_loss.mean():.2f}, gradient norm {target_grad.norm():.1f} (largest "
          f"{target_grad.abs().max():.3f}); fluency {fluency.mean():.2f}, gradient norm {fluency_grad.norm():.1f} "
          f"(largest {fluency_grad.abs().max():.3f}); norm ratio {fluency_grad.norm() / target_grad.norm():.1f}")
