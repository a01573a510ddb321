"""What GRPO's rollouts look like: sampled latent counts against the turn count S, and their accuracy.

One sample per prompt from the last N training rows (GRPO's slice), the stop head at each temperature
(`binary_head_temp`) and the answer tokens at `--token-temperature`; prints, per (S, count), the number of
samples and the share answered right (docs/latent.md, "Where GRPO's length term works").

python bench/latent_stop_samples.py MODEL_DIR DATA_DIR --stop-temperatures 2,4 [--rows 128 --threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections import defaultdict
from pathlib import Path

import torch

from softtoken.latent.checkpoint import load_latent_model
from softtoken.latent.evaluate import score
from softtoken.latent.generation import generate
from softtoken.latent.grpo import rl_prompts
from softtoken.latent.options import GrpoConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path, help="folder with train.jsonl")
    parser.add_argument("--stop-temperatures", default="1,2,4")
    parser.add_argument("--token-temperature", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = (args.data / "train.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][-args.rows :]
    model, tokenizer = load_latent_model(args.model)
    saved = model.settings
    prompts = rl_prompts(tokenizer, model, rows, GrpoConfig(batch_size=2, num_generations=2))
    for temperature in (float(t) for t in args.stop_temperatures.split(",")):
        model.settings = dataclasses.replace(saved, binary_head_temp=temperature)
        with torch.no_grad():
            out = generate(model, [p for p, _ in prompts], max_new_tokens=16,
                           max_latent_steps=model.settings.max_latent_steps, temperature=args.token_temperature,
                           generator=torch.Generator().manual_seed(args.seed))
        cells: dict[tuple[int, int], list[bool]] = defaultdict(list)
        for (prompt, row), completion in zip(prompts, out.completions, strict=True):
            scored = score(prompt, completion, row["answer"], tokenizer=tokenizer, ids=model.ids, latent=True,
                           require_eos=True)
            cells[len(row["steps"]), scored.latent_steps].append(scored.correct)
        total = [ok for oks in cells.values() for ok in oks]
        short = sum(len(oks) for (turns, count), oks in cells.items() if count < turns)
        print(f"stop temperature {temperature}: accuracy {sum(total) / len(total):.3f}, "
              f"count < S on {short / len(total):.0%} of {len(total)} samples")
        for (turns, count), oks in sorted(cells.items()):
            print(f"  S={turns} count={count}: n={len(oks)} accuracy={sum(oks) / len(oks):.2f}")


if __name__ == "__main__":
    main()
