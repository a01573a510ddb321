"""How different are ADC's B random starts? (issue 12, docs/benchmarks.md §6: screen 20)

For each start std (`ADCConfig.init_std`): four relaxed 10-token prompts softmax(N(0, std^2)) over the prompt
vocabulary, as ADC draws them; the largest entry, the effective number of tokens per row (1 / sum p^2), the
mean cosine between the four prompts' mixture embeddings, the start losses on a target, and how much of their
top-10 supports the prompts share after one ADC step (lr 10 on the mean loss, then the top-10 projection of
`adc-sparse`'s s_max with every target token wrong).

Usage: python bench/screens/start_diversity.py bench/results/screen-budget-720/targets.json natural_06 [--threads 1]
"""

from __future__ import annotations

import argparse
import itertools

import torch

from softtoken.data.targets import load_targets
from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import project_top_s
from softtoken.objectives import ObjectiveContext, TargetCE
from softtoken.relax import initial_logits

STDS = (1.0, 2.0, 3.0, 5.0)
BATCH, LENGTH, SUPPORT, LEARNING_RATE = 4, 10, 10, 10.0


def shared_support(rows: torch.Tensor) -> float:
    """Mean fraction of a row's support that two prompts share, over prompt pairs and positions: rows (B, L, V)."""
    supports = [[set(row.nonzero().flatten().tolist()) for row in prompt] for prompt in rows]
    pairs = list(itertools.combinations(range(len(supports)), 2))
    shared = sum(len(supports[a][i] & supports[b][i]) / len(supports[a][i]) for a, b in pairs
                 for i in range(rows.shape[1]))
    return shared / (len(pairs) * rows.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("targets")
    parser.add_argument("target_id")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    targets = {target.id: target for target in load_targets(args.targets).targets}
    if args.target_id not in targets:
        raise SystemExit(f"unknown target id {args.target_id!r}; the set has {sorted(targets)}")
    lm = as_softlm(None)
    context, objective = ObjectiveContext(target_ids=targets[args.target_id].ids), TargetCE()
    for std in STDS:
        logits = initial_logits((BATCH, LENGTH, lm.prompt_vocab_size), std=std,
                                generator=torch.Generator().manual_seed(0), device=lm.device)
        relaxed = torch.softmax(logits, -1).requires_grad_(True)  # (B, L, V)
        mixtures = torch.nn.functional.normalize(lm.embed_probs(relaxed.detach()), dim=-1)  # (B, L, D)
        cosine = torch.einsum("ild,jld->ijl", mixtures, mixtures)  # (B, B, L)
        pairs = torch.triu_indices(BATCH, BATCH, 1)
        losses, _ = objective.loss_and_predictions(lm, relaxed, context)  # (B,)
        losses.mean().backward()
        with torch.no_grad():
            stepped = project_top_s(relaxed - LEARNING_RATE * relaxed.grad, torch.full((BATCH,), SUPPORT))
        print(f"std {std:g}: largest entry {relaxed.max().item():.4f}, effective tokens a row "
              f"{(1 / (relaxed.detach() ** 2).sum(-1)).mean().item():.0f}, mixture cosine "
              f"{cosine[pairs[0], pairs[1]].mean().item():.3f}, start losses "
              f"{', '.join(f'{loss:.2f}' for loss in losses.tolist())}, top-{SUPPORT} support shared after one step "
              f"{shared_support(stepped):.2f}", flush=True)


if __name__ == "__main__":
    main()
