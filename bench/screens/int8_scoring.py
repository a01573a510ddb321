"""Lever screen (docs/benchmarks.md §6): score GCG candidates with an int8 copy of the model?

64 random single swaps of a random 10-token prompt, scored on natural_01's target (the embedded model's
greedy continuation of the second opening) in float32 and through `torch.ao.quantization.quantize_dynamic`
int8 copies (all Linear layers per tensor; the decoder's per channel with the LM head left in float32).
Prints seconds per batch and how well each int8 copy preserves the float32 ranking (Spearman correlation,
overlap of the 8 best): a search only needs the ranking.

Usage: python bench/screens/int8_scoring.py   (one thread)
"""

import copy
import time
import warnings
from pathlib import Path

import torch

from softtoken.lm.softlm import as_softlm
from softtoken.objectives import TargetCE
from softtoken.objectives.base import ObjectiveContext

warnings.filterwarnings("ignore")  # quantize_dynamic is deprecated in favour of torchao
torch.set_num_threads(1)
lm = as_softlm(None)
openings = Path(__file__).resolve().parents[1] / "natural_openings.txt"
lines = [line.strip() for line in openings.read_text().splitlines() if line.strip() and not line.startswith("#")]
target = lm.greedy_generate(torch.tensor([lm.encode(lines[1])[:10]]), 10)[0].tolist()
generator = torch.Generator().manual_seed(0)
current = torch.randint(0, lm.prompt_vocab_size, (10,), generator=generator)
candidates = current.repeat(64, 1)
candidates[torch.arange(64), torch.randint(0, 10, (64,), generator=generator)] = torch.randint(
    0, lm.prompt_vocab_size, (64,), generator=generator)
objective, context = TargetCE(), ObjectiveContext(target_ids=tuple(target))


def timed_losses() -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        objective.hard_loss_and_predictions(lm, candidates, context)  # warm-up
        start = time.perf_counter()
        losses = objective.hard_loss_and_predictions(lm, candidates, context)[0]
    return time.perf_counter() - start, losses


seconds, reference = timed_losses()
print(f"float32: {seconds:.2f} s per 64 candidates")
per_channel = {name: torch.ao.quantization.per_channel_dynamic_qconfig for name, module in lm.model.named_modules()
               if isinstance(module, torch.nn.Linear) and "lm_head" not in name}
copies = {"int8, every Linear, per tensor": {torch.nn.Linear}, "int8, decoder per channel, LM head float32": per_channel}
for name, spec in copies.items():
    lm.active_model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(lm.model), spec, dtype=torch.qint8)
    seconds, losses = timed_losses()
    ranks = torch.stack([reference.argsort().argsort(), losses.argsort().argsort()]).float()
    overlap = len(set(reference.argsort()[:8].tolist()) & set(losses.argsort()[:8].tolist()))
    print(f"{name}: {seconds:.2f} s, Spearman {torch.corrcoef(ranks)[0, 1].item():+.2f}, best-8 overlap {overlap}/8")
