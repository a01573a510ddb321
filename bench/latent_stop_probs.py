"""How saturated is the stop head? Greedy per-step p_stop and the latent count of sampled rollouts.

python bench/latent_stop_probs.py MODEL_DIR DATA_DIR [--temps 1,2,4] [--n 64] [--g 8]

For each stop-head temperature T (the `binary_head_temp_<T>` latent setting, which divides both
stop-head logits and so leaves greedy decisions unchanged), prints p_stop along the greedy latent
path (mean over rows), then samples G rollouts per validation prompt at temperature 1 (as GRPO does)
and reports the sampled latent-count histogram, the sampled accuracy, and the share of groups that
hold >= 2 correct completions of different lengths (the groups the relative-length term can use),
and the sampled format rate and accuracy by latent count (a correctness/format reward that depends on
the count pushes it even without a length term).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
from collections import Counter
from pathlib import Path

import torch

from softtoken.latent.checkpoint import load_latent_model
from softtoken.latent.evaluate import score
from softtoken.latent.generation import generate
from softtoken.latent.tokens import prompt_ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--temps", default="1,2,4")
    parser.add_argument("--n", type=int, default=64, help="validation prompts")
    parser.add_argument("--g", type=int, default=8, help="samples per prompt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in (Path(args.data) / "validation.jsonl").read_text().splitlines() if line][: args.n]
    base, tokenizer = load_latent_model(args.model)
    for temp in (float(t) for t in args.temps.split(",")):
        model = base
        model.settings = dataclasses.replace(base.settings, binary_head_temp=temp)
        ids = model.ids
        prompts = [prompt_ids(tokenizer, ids, r["question"]) + [ids.start] for r in rows]
        greedy = generate(model, prompts, max_new_tokens=16, max_latent_steps=model.settings.max_latent_steps,
                          return_logits=True)
        p_stop = []  # per latent position along the greedy path
        for j in range(greedy.logits.shape[1]):
            pos = [b for b, c in enumerate(greedy.completions) if j < len(c) and (j == 0 or c[j - 1] == ids.cont)]
            if not pos:
                break
            pair = greedy.logits[pos, j][:, [ids.cont, ids.stop]]
            p_stop.append(float(torch.softmax(pair, -1)[:, 1].mean()))
        batch = [p for p in prompts for _ in range(args.g)]
        out = generate(model, batch, max_new_tokens=16, max_latent_steps=model.settings.max_latent_steps,
                       temperature=1.0, generator=torch.Generator().manual_seed(args.seed))
        scored = [score(p, c, rows[i // args.g]["answer"], tokenizer=tokenizer, ids=ids, latent=True, require_eos=True)
                  for i, (p, c) in enumerate(zip(batch, out.completions, strict=True))]
        useful = 0
        for start in range(0, len(scored), args.g):
            lengths = {s.length for s in scored[start : start + args.g] if s.correct}
            useful += len(lengths) >= 2
        print(f"T={temp:g}: greedy p_stop by step {[round(p, 4) for p in p_stop]}; sampled latent steps "
              f"{dict(sorted(Counter(s.latent_steps for s in scored).items()))}, mean "
              f"{statistics.fmean(s.latent_steps for s in scored):.2f}; sampled accuracy "
              f"{statistics.fmean(s.correct for s in scored):.3f}; groups with correct lengths differing "
              f"{useful}/{len(scored) // args.g}")
        by_k = {}
        for s in scored:
            by_k.setdefault(min(s.latent_steps, 5), []).append(s)
        print("   by sampled latent steps (5 = 5+): " + "; ".join(
            f"k={k}: n={len(v)} format {statistics.fmean(x.format_ok for x in v):.2f} "
            f"accuracy {statistics.fmean(x.correct for x in v):.2f}" for k, v in sorted(by_k.items())))


if __name__ == "__main__":
    main()
