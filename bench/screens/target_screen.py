"""Target screening (`screen_tokens`, `screen_keep`; docs/benchmarks.md §6, "Screening candidates on the target's
first tokens"): how well a candidate's loss on the target's first t tokens ranks its whole loss, and what scoring on
them first saves.

`rank`: runs `gcg-copy` (every candidate scored whole, in one chunk) on natural targets from the paired starts of
seed 0 for STEPS steps and, at each step, reads every candidate's per-token cross-entropy. For t = 1, 2, 3, 5 it
prints the share of steps whose lowest-loss candidate is among the 25 % and the 50 % with the lowest loss on the
first t tokens (what a screen with that keep would finish), and the share of positions a lossless screen would save:
one that drops only candidates whose first t tokens' loss already bounds their mean above the step's lowest, and
whose first t tokens are not all right (so no exact match is dropped).
`rate`: candidates scored a second, whole and screened, on 80 single swaps of a random 10-token prompt (one step of
`gcg-copy`: 64 drawn and 16 copies), in chunks of 64 (`gcg-copy`'s) and in one chunk of 80 (one screen, one finishing
pass a step), and from the prefix cache in one chunk and in sorted chunks of 40, 27 and 20 (each from its smallest first
changed position); whole and at t = 3 also in one chunk of 80 in float32 (`gcg-copy`'s `compute_dtype: auto`
scores in bf16 where the CPU has native bf16, in float32 elsewhere); the screen's passes are counted as positions a
candidate.

Usage: python bench/screens/target_screen.py rank STEPS TARGET [TARGET ...]
       python bench/screens/target_screen.py rate [--repeats 5]          (embedded model, one thread)
"""

from __future__ import annotations

import sys
from dataclasses import replace

import torch
from timing import seconds  # bench/screens/timing.py, next to this script

from softtoken.data.targets import load_targets
from softtoken.experiments.spec import run_key, run_seed
from softtoken.lm.softlm import as_softlm
from softtoken.methods import GCG, Budget, Problem, build_method
from softtoken.methods.candidates import sample_candidates
from softtoken.methods.gcg import gcg_copy
from softtoken.objectives import TargetCE
from softtoken.objectives.target import cross_entropy_loss

NATURAL_TARGETS = "bench/results/natural/targets.json"
PROMPT_LENGTH = 10


class RecordingCE(TargetCE):
    """TargetCE that keeps each scored batch's per-token cross-entropy (N, T) and right tokens (N, T)."""

    def __init__(self, records: list) -> None:
        super().__init__()
        object.__setattr__(self, "records", records)

    def reduce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape[0] > 1:  # a batch of candidates, not the gradient's one prompt
            self.records.append((cross_entropy_loss(logits, target), logits.argmax(-1) == target))
        return super().reduce(logits, target)


def rank(steps: int, targets: list[str]) -> None:
    lm = as_softlm(None)
    samples = {target.id: target for target in load_targets(NATURAL_TARGETS).targets}
    print("| target | steps | t | lowest kept at 25 % | at 50 % | lossless screen saves |")
    print("| --- | --- | --- | --- | --- | --- |")
    for target_id in targets:
        records: list = []
        method = build_method(None, "gcg-copy", {"candidate_batch_size": 1000})
        method.objective = lambda problem, records=records: RecordingCE(records)
        problem = Problem(lm=lm, target_ids=samples[target_id].resolve_ids(lm), prompt_length=PROMPT_LENGTH,
                          seed=run_seed(run_key("paired", "-", 0, target_id)))
        result = method.run(problem, Budget(steps=steps))
        outcome = f"exact at step {result.success_step}" if result.exact_match else "miss"
        for head in (1, 2, 3, 5):
            kept = {keep: sum(int(ce.mean(-1).argmin()) in ce[:, :head].sum(-1).argsort()[:max(1, int(keep * len(ce)))]
                              for ce, _ in records) / len(records) for keep in (0.25, 0.5)}
            saved = total = 0
            for ce, right in records:
                bound = ce[:, :head].sum(-1) / ce.shape[1]  # each later token adds >= 0
                dropped = (bound >= ce.mean(-1).min()) & ~right[:, :head].all(-1)
                saved += int(dropped.sum()) * (ce.shape[1] - head)
                total += ce.shape[0] * (PROMPT_LENGTH + ce.shape[1])
            print(f"| {target_id} ({outcome}) | {len(records)} | {head} | {kept[0.25]:.2f} | {kept[0.5]:.2f} "
                  f"| {saved / total:.2f} |", flush=True)


def rate(repeats: int) -> None:
    lm = as_softlm(None)
    target = tuple(lm.encode(" sky, casting a golden glow over the horizon."))
    problem = Problem(lm=lm, target_ids=target, prompt_length=PROMPT_LENGTH, seed=0)
    generator = torch.Generator().manual_seed(0)
    current = torch.randint(0, lm.prompt_vocab_size, (PROMPT_LENGTH,), generator=generator)
    grad = torch.randn(PROMPT_LENGTH, lm.prompt_vocab_size, generator=generator)
    candidates = sample_candidates(current, grad, search_width=80, topk=32, n_replace=1, generator=generator,
                                   distinct=True)
    screens = ((0, 1.0), (1, 0.25), (2, 0.25), (3, 0.25), (3, 0.5), (5, 0.25))  # (screen_tokens, screen_keep)
    chunkings = ((False, 64), (False, 80), (True, 80), (True, 40), (True, 27), (True, 20))  # (prefix_cache, chunk)
    rows = [("auto", prefix, chunk, *screen) for prefix, chunk in chunkings for screen in screens]
    rows += [("float32", False, 80, 0, 1.0), ("float32", False, 80, 3, 0.25)]
    for dtype, prefix, chunk, head, keep in rows:
        method = GCG(replace(gcg_copy(), prefix_cache=prefix, candidate_batch_size=chunk, screen_tokens=head,
                             screen_keep=keep, compute_dtype=dtype))
        run = method.harness(problem, Budget(steps=1))
        before = lm.tokens.forward
        elapsed = seconds(lambda: method._score(run, method.objective(problem), candidates, current), repeats)
        positions = (lm.tokens.forward - before) / (repeats + 1) / candidates.shape[0]
        print(f"{dtype:7} prefix_cache={prefix!s:5} chunk {chunk}, screen_tokens={head} keep={keep:.2f}: "
              f"{candidates.shape[0] / elapsed:6.1f} candidates/s, {positions:5.1f} positions each", flush=True)


def main() -> None:
    torch.set_num_threads(1)
    if len(sys.argv) >= 4 and sys.argv[1] == "rank":
        rank(int(sys.argv[2]), sys.argv[3:])
    elif len(sys.argv) in (2, 4) and sys.argv[1] == "rate":
        rate(int(sys.argv[3]) if len(sys.argv) == 4 else 5)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
