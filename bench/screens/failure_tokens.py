"""Why did a run fail? For every run of a bench store that missed its target (docs/benchmarks.md §6): the
teacher-forced argmax check and cross-entropy of each target token under the best prompt found, and the
greedy output. A run whose only wrong token has a large cross-entropy was one token away, and the mean
loss hid it.

Usage: python bench/screens/failure_tokens.py bench/results/natural [LABEL]   (embedded model, one thread)
"""

import json
import sys
from pathlib import Path

import torch

from softtoken.lm.softlm import as_softlm
from softtoken.objectives.target import cross_entropy_loss

torch.set_num_threads(1)
store, label = Path(sys.argv[1]), (sys.argv[2] if len(sys.argv) > 2 else None)
lm = as_softlm(None)
for line in (store / "results.jsonl").read_text().splitlines():
    record = json.loads(line)
    result = record.get("result")
    if not result or result["metrics"]["eval/exact_match"] or (label and record["label"] != label):
        continue
    target = torch.tensor(result["target_ids"])
    with torch.no_grad():
        logits = lm.teacher_forced_logits(lm.embed_ids(torch.tensor([result["prompt_ids"]])), target)
    right = "".join("+" if ok else "-" for ok in (logits.argmax(-1)[0] == target).tolist())
    losses = " ".join(f"{value:.1f}" for value in cross_entropy_loss(logits, target)[0].tolist())
    print(f"{record['label']} {record['target_id']}: {right}  CE {losses}  -> {result['output_text'][:40]!r}")
