"""Which single swaps fix an ADC near miss? For every missed run of a row (docs/benchmarks.md §6, "Copy swaps"):
its final prompt's wrong target tokens (teacher-forced argmax), and the fewest left after one swap drawn from each
of three proposal sets of the same size: every swap to one of the target's own tokens (the copy swaps), as many
distinct swaps from the top-32 of the prompt's one-hot gradient (the polish's proposals) and as many swaps to
uniformly drawn tokens. Then, per set, how many runs it brings to fewer wrong tokens and how many to none.

Usage: python bench/screens/copy_swaps.py STORE:LABEL [STORE:LABEL ...]   (embedded model, two threads)
"""

import sys

import torch

from hit_rates import screen_runs
from softtoken.lm.softlm import as_softlm
from softtoken.methods.candidates import sample_candidates, token_swaps
from softtoken.methods.starts import prompt_indices
from softtoken.objectives.target import cross_entropy_loss

SETS = ("copy", "gradient", "random")


def wrong_and_loss(lm, prompts: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Wrong target tokens (N,) and mean cross-entropy (N,) of prompts (N, L) of prompt-vocabulary indices."""
    wrong, losses = [], []
    with torch.no_grad():
        for chunk in prompts.split(128):
            logits = lm.teacher_forced_logits(lm.embed_ids(lm.to_model_ids(chunk)), target)  # (n, T, V)
            wrong.append((logits.argmax(-1) != target).sum(-1))
            losses.append(cross_entropy_loss(logits, target).mean(-1))
    return torch.cat(wrong), torch.cat(losses)


def one_hot_gradient(lm, prompt: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target loss's gradient (L, V) at the one-hot prompt (L,)."""
    one_hot = torch.nn.functional.one_hot(prompt, lm.prompt_vocab_size).float()[None].requires_grad_(True)
    cross_entropy_loss(lm.teacher_forced_logits(lm.embed_probs(one_hot), target), target).mean().backward()
    return one_hot.grad[0]


def proposals(lm, prompt: torch.Tensor, target: torch.Tensor, generator: torch.Generator) -> list[torch.Tensor]:
    """The three sets of single swaps of prompt (L,), each (N, L) with N the copy swaps' count."""
    copies = token_swaps(prompt, prompt_indices(lm, tuple(target.tolist())).unique())
    count = copies.shape[0]
    gradient = sample_candidates(prompt, one_hot_gradient(lm, prompt, target), search_width=count, topk=32,
                                 n_replace=1, generator=generator, distinct=True)
    positions = torch.randint(0, prompt.numel(), (count,), generator=generator)
    tokens = torch.randint(0, lm.prompt_vocab_size, (count,), generator=generator)
    uniform = prompt.repeat(count, 1).scatter_(1, positions[:, None], tokens[:, None])
    return [copies, gradient, uniform]


def main() -> None:
    if len(sys.argv) < 2 or any(":" not in row for row in sys.argv[1:]):
        sys.exit(__doc__)
    torch.set_num_threads(2)
    lm, generator = as_softlm(None), torch.Generator().manual_seed(0)
    fewer, none = dict.fromkeys(SETS, 0), dict.fromkeys(SETS, 0)
    runs = 0
    print("| row | target | seed | wrong | " + " | ".join(f"{name}: fewest wrong" for name in SETS) + " |")
    print("| --- | --- | --- | --- | " + " | ".join("---" for _ in SETS) + " |")
    for row in sys.argv[1:]:
        store, label = row.rsplit(":", 1)
        for seed, run in sorted(screen_runs(store, label).items()):
            for name, record in sorted(run.items()):
                result = record["result"]
                if result["metrics"]["eval/exact_match"]:
                    continue
                target = torch.tensor(result["target_ids"])
                prompt = lm.to_prompt_index(torch.tensor(result["prompt_ids"]))[0]  # (L,)
                wrong = int(wrong_and_loss(lm, prompt[None], target)[0])
                best = [int(wrong_and_loss(lm, swaps, target)[0].min()) for swaps in proposals(lm, prompt, target,
                                                                                             generator)]
                runs += 1
                for set_name, fewest in zip(SETS, best):
                    fewer[set_name] += fewest < wrong
                    none[set_name] += fewest == 0
                print(f"| {label} | {name} | {seed} | {wrong} | " + " | ".join(str(b) for b in best) + " |", flush=True)
    for set_name in SETS:
        print(f"{set_name}: fewer wrong tokens in {fewer[set_name]} of {runs} missed runs, none wrong in "
              f"{none[set_name]}")


if __name__ == "__main__":
    main()
