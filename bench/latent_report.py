"""Latent count by problem difficulty from `softtoken latent eval --out FILE` (docs/latent.md numbers).

python bench/latent_report.py EVAL.json DATA/validation.jsonl [--factor 1 --bias 1 --max 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_json")
    parser.add_argument("rows_jsonl")
    parser.add_argument("--factor", type=int, default=0, help="schedule n = clamp(S*factor + bias, min, max)")
    parser.add_argument("--bias", type=int, default=0)
    parser.add_argument("--min", type=int, default=0)
    parser.add_argument("--max", type=int, default=10**6)
    args = parser.parse_args()
    result = json.load(open(args.eval_json))
    rows = [json.loads(line) for line in open(args.rows_jsonl) if line.strip()][: result["n"]]
    steps = [length - 2 for length in result["lengths"]]  # k CONTINUE = length - START - STOP
    difficulty = [len(row["steps"]) for row in rows]
    schedule = [max(args.min, min(args.max, s * args.factor + args.bias)) for s in difficulty]
    by_s = defaultdict(list)
    for s, k, ok in zip(difficulty, steps, result["correct"], strict=True):
        by_s[s].append((k, ok))
    for s in sorted(by_s):
        ks, oks = zip(*by_s[s], strict=True)
        print(f"S={s}: n={len(ks)} latent steps mean={statistics.fmean(ks):.2f} accuracy={statistics.fmean(oks):.3f}")
    exact = statistics.fmean(k == n for k, n in zip(steps, schedule, strict=True))
    print(f"exact match with schedule: {exact:.3f}")
    if len(set(steps)) > 1 and len(set(difficulty)) > 1:
        print(f"correlation(latent steps, S): {statistics.correlation(steps, difficulty):.3f}")


if __name__ == "__main__":
    main()
