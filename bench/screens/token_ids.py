"""How common the pieces of the natural openings and of ADC's exact prompts are, by token id (docs/benchmarks.md §6,
screen 26): SmolLM2's byte-level BPE numbers its tokens in merge order, so low ids are its commonest pieces.

Usage: python bench/screens/token_ids.py [N]   (N: the id limit, 16384 by default)
"""

import glob
import json
import sys

limit = int(sys.argv[1]) if len(sys.argv) > 1 else 16384
samples = json.load(open("bench/results/natural-seeds/targets.json"))["samples"]
openings = [sample["ground_truth_prompt_tokens"] for sample in samples]
prompts = []
for store in sorted(glob.glob("bench/results/*/results.jsonl")):
    for line in open(store):
        record = json.loads(line)
        result = record.get("result")
        if result and record["method"].startswith("adc") and result["metrics"].get("eval/exact_match"):
            prompts.append(result["prompt_ids"])
for name, sequences in (("natural openings", openings), ("exact ADC prompts", prompts)):
    tokens = [i for ids in sequences for i in ids]
    print(f"{name}: {len(sequences)}, tokens below {limit}: {sum(i < limit for i in tokens) / len(tokens):.1%}, "
          f"wholly below: {sum(all(i < limit for i in ids) for ids in sequences)}")
