"""GCG candidate evaluations per second on the embedded model, full vs prefix-cache scoring, against this
CPU's bf16 matmul peak (docs/benchmarks.md §6, "physical limit").

Scores the same 64 distinct single-swap candidates of a 10-token prompt on a 10-token target as
`gcg-fast` does (bf16 autocast), `--repeats` times each way: in one batch of 64, and from the prefix
cache in sorted chunks of 64, 32 and 16 candidates; one thread by default. The FLOPs
of one candidate are 2 x (decoder parameters x positions through the decoder + LM-head parameters x T);
the peak is a (1216 x 576) @ (576 x 1536) bf16 matmul, the shape of a decoder MLP at this batch.

Usage: python bench/screens/scoring_rate.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from timing import seconds, thread_args  # bench/screens/timing.py, next to this script

from softtoken.lm.softlm import as_softlm
from softtoken.methods import GCG, Budget, Problem
from softtoken.methods.candidates import sample_candidates
from softtoken.methods.gcg import gcg_fast


def matmul_peak(rows: int, repeats: int = 20) -> float:
    """GFLOP/s of a decoder-MLP-shaped bf16 matmul."""
    x, weight = torch.randn(rows, 576).bfloat16(), torch.randn(1536, 576).bfloat16()
    return 2 * rows * 576 * 1536 / seconds(lambda: F.linear(x, weight), repeats) / 1e9


def main() -> None:
    args = thread_args()
    lm = as_softlm(None)
    target = tuple(lm.encode(" sky, casting a golden glow over the horizon."))
    problem = Problem(lm=lm, target_ids=target, prompt_length=10, seed=0)
    generator = torch.Generator().manual_seed(0)
    current = torch.randint(0, lm.prompt_vocab_size, (10,), generator=generator)
    grad = torch.randn(10, lm.prompt_vocab_size, generator=generator)
    candidates = sample_candidates(current, grad, search_width=64, topk=32, n_replace=1, generator=generator,
                                   distinct=True)
    decoder = sum(p.numel() for name, p in lm.model.named_parameters() if "embed" not in name and "lm_head" not in name)
    head = lm.model.get_output_embeddings().weight.numel()
    peak = matmul_peak(64 * (10 + len(target) - 1))
    print(f"threads {args.threads}; bf16 matmul peak {peak:.0f} GFLOP/s; decoder {decoder / 1e6:.1f}M, head {head / 1e6:.1f}M")
    for prefix, chunk in ((False, 64), (True, 64), (True, 32), (True, 16)):
        method = GCG(replace(gcg_fast(), prefix_cache=prefix, candidate_batch_size=chunk))
        run = method.harness(problem, Budget(steps=1))
        before = lm.tokens.forward
        elapsed = seconds(lambda: method._score(run, method.objective(problem), candidates, current), args.repeats)
        positions = (lm.tokens.forward - before) / (args.repeats + 1) / candidates.shape[0]
        flops = 2 * (decoder * positions + head * len(target))
        rate = candidates.shape[0] / elapsed
        print(f"prefix_cache={prefix!s:5} chunk {chunk:2d}: {rate:6.1f} candidates/s, {positions:5.1f} positions each, "
              f"{rate * flops / 1e9:5.0f} GFLOP/s = {rate * flops / 1e9 / peak:.2f} of the matmul peak")


if __name__ == "__main__":
    main()
