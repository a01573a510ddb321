"""The held-out target set of the benchmark (never tuned on): 6 targets from ../shared/data, 10 tokens each.

- 3 reference SmolLM2 rank-k targets (the first three with k = 1), cut to their first 10 tokens;
- 3 Wikipedia prompt-reconstruction prompts (the first three), whose 10-token greedy continuation is
  regenerated with the model in use (the stored continuations come from the base model).

The reference files are read unchanged and nothing is copied into the repository: the set is written
to runs/ (default runs/targets/generalisation.jsonl), where bench/generalisation.yaml reads it.

Usage: python bench/generalisation_targets.py [--data ../shared/data] [--out runs/targets/generalisation.jsonl]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from softtoken.data import load_targets
from softtoken.lm.softlm import as_softlm

RANK_K_FILE = "smollm2-135m-base_diverse_targets_k1-5-25_x5_seed42_TL20_NF1"
WIKIPEDIA_FILE = "soda_smollm2-135m_wikipedia_SEED42_PL20_TL20_N10.json"
TOKENS, PER_SOURCE = 10, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path("runs/targets/generalisation.jsonl"))
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    lm = as_softlm(args.model)
    rows = []
    rank_one = [t for t in load_targets(args.data / RANK_K_FILE).targets if t.k == 1][:PER_SOURCE]
    for target in rank_one:
        ids = lm.encode(target.text)[:TOKENS]
        rows.append({"id": f"reference-k1-{target.id}", "text": lm.decode(ids), "ids": ids, "k": 1})
    for target in load_targets(args.data / WIKIPEDIA_FILE).targets[:PER_SOURCE]:
        prompt = list(target.prompt_ids or lm.encode(target.text))
        ids = lm.greedy_generate(torch.tensor([prompt]), TOKENS)[0].tolist()
        rows.append({"id": f"wikipedia-{target.id}", "text": lm.decode(ids), "ids": ids, "prompt_ids": prompt})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for row in rows:
        print(row["id"], repr(row["text"]))
    print(f"wrote {len(rows)} targets to {args.out}")


if __name__ == "__main__":
    main()
