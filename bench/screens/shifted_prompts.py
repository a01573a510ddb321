"""Shifted prompts for the misses (docs/benchmarks.md §6, "Copy swaps ranked by the gradient"). A greedy
continuation is self-consistent: the prompt followed by the first k tokens of its own continuation continues with
the rest of it. So where a miss's output is the target shifted (" 1945, ..." for "945, ..."), the prompt's last
L - k tokens followed by the output's first k might be exact. For every miss of the rows, its final prompt p and
output o (T tokens): the target tokens right (position by position) under greedy decoding of p and of
p[k:] + o[:k] for k = 1, 2, 3, and how many of the shifted prompts are exact.

Usage: python bench/screens/shifted_prompts.py SEEDS STORE:LABEL[+STORE2] ...
       (e.g. 0,1,2,3,4 bench/results/screen-copy-paired:adc-copy-paired+bench/results/screen-copy-paired-rest
       bench/results/screen-copy-360:adc-copy-paired-360s)
"""

import sys

import torch

from hit_rates import exact
from row_table import row_runs
from softtoken.api import as_softlm

SHIFTS = (1, 2, 3)


def matching(output: torch.Tensor, target: list[int]) -> int:
    """How many of the target's tokens `output` (T,) has at their positions."""
    return sum(a == b for a, b in zip(output.tolist(), target))


def right(lm, prompt: torch.Tensor, target: list[int]) -> int:
    """How many of the target's tokens the greedy continuation of `prompt` (model ids) has at their positions."""
    return matching(lm.greedy_generate(prompt[None], len(target))[0], target)


def main() -> None:
    seeds = {int(seed) for seed in sys.argv[1].split(",")}
    lm = as_softlm(None)
    misses = shifted_exact = 0
    for row in sys.argv[2:]:
        for (seed, target_id), record in sorted(row_runs(row, seeds).items()):
            if exact(record):
                continue
            result = record["result"]
            prompt, target = torch.tensor(result["prompt_ids"]), result["target_ids"]
            output = lm.greedy_generate(prompt[None], len(target))[0]
            shifted = [right(lm, torch.cat([prompt[k:], output[:k]]), target) for k in SHIFTS]
            misses += 1
            shifted_exact += any(count == len(target) for count in shifted)
            print(f"{row.split(':', 1)[1].split('+')[0]} seed {seed} {target_id}: {matching(output, target)} right, "
                  f"shifted by {SHIFTS}: {shifted}; output {lm.decode(output.tolist())!r}")
    print(f"{misses} misses, {shifted_exact} with an exact shifted prompt")


if __name__ == "__main__":
    main()
