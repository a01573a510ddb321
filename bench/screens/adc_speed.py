"""What ADC's step costs and what would make it cheaper (issue 12, docs/benchmarks.md §6), on one thread:

1. the passes, mean seconds over --repeats after a warm-up: the loss's forward + backward of four relaxed
   10-token prompts on a 10-token target, eager and with torch.compile'd decoder layers, and eager with the
   prompt's fluency from the same forward (`fluency_weight`); the embedding mixture
   alone; an update and projection of the four prompts; the judge's greedy decoding of one prompt and of four
   prompts in one batch; and a teacher-forced pass of one prompt;
2. whole `adc-polish` runs of --steps steps on natural_15 (which no run inverts, so every run makes all its
   steps): the preset, `eval_every: 50`, `compile_model: true` and both (compiled in a 3-step run before), and
   `balance_rows: true` (screen 25), as
   seconds per step, with whether each run's loss history equals the preset's (bitwise, or to 1e-4).

Usage: python bench/screens/adc_speed.py [--threads 1] [--repeats 5] [--steps 60]
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
from timing import seconds, thread_args  # bench/screens/timing.py, next to this script

from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import ADC, adc_polish, project_top_s
from softtoken.methods.base import Budget, Problem
from softtoken.objectives import ObjectiveContext, TargetCE

TARGET_TEXT = " in the study, 15 were women and"  # natural_15's target
args = thread_args(__doc__, steps=60)
lm = as_softlm(None)
target = tuple(lm.encode(TARGET_TEXT))
context, objective = ObjectiveContext(target_ids=target), TargetCE()
generator = torch.Generator().manual_seed(0)
relaxed = torch.softmax(torch.randn(4, 10, lm.prompt_vocab_size, generator=generator), -1).requires_grad_(True)
prompts = torch.randint(lm.prompt_vocab_size, (4, 10), generator=generator)


def loss_pass(compiled: bool) -> None:
    with lm.compute("float32", compiled=compiled):
        losses, _ = objective.loss_and_predictions(lm, relaxed, context)
    losses.mean().backward()
    relaxed.grad = None


def fluent_loss_pass() -> None:
    """`loss_pass` with the prompt's fluency read from the same forward (`fluency_weight`, screens 22-23)."""
    losses, _, fluency = objective.loss_predictions_and_fluency(lm, relaxed, context)
    (losses + 0.05 * fluency).mean().backward()
    relaxed.grad = None


def mixture_pass() -> None:
    lm.embed_probs(relaxed).sum().backward()
    relaxed.grad = None


def update_and_projection() -> None:
    with torch.no_grad():
        relaxed.copy_(project_top_s(relaxed - 0.1 * torch.randn_like(relaxed), torch.full((4,), 3)))


def teacher_forced_check() -> None:
    with torch.no_grad():
        objective.hard_loss_and_predictions(lm, prompts[:1], context)


passes = {
    "loss forward + backward, 4 relaxed prompts, eager": lambda: loss_pass(False),
    "loss forward + backward, 4 relaxed prompts, compiled": lambda: loss_pass(True),
    "loss forward + backward with the prompt's fluency, eager": fluent_loss_pass,
    "of which the embedding mixture, forward + backward": mixture_pass,
    "a random step (drawn here) and the top-3 projection": update_and_projection,
    "judge: greedy decoding of 1 prompt": lambda: lm.greedy_generate(lm.to_model_ids(prompts[:1]), len(target)),
    "judge: greedy decoding of 4 prompts, one batch": lambda: lm.greedy_generate(lm.to_model_ids(prompts),
                                                                                 len(target)),
    "teacher-forced pass of 1 prompt": teacher_forced_check,
}
for name, fn in passes.items():
    print(f"{name}: {seconds(fn, args.repeats):.3f} s", flush=True)

variants = {"adc-polish": adc_polish(), "eval_every 50": replace(adc_polish(), eval_every=50),
            "compile_model": replace(adc_polish(), compile_model=True),
            "both": replace(adc_polish(), eval_every=50, compile_model=True),
            "balance_rows": replace(adc_polish(), balance_rows=True)}
problem = Problem(lm=lm, target_ids=target, prompt_length=10, seed=0)
ADC(replace(adc_polish(), compile_model=True)).run(problem, Budget(steps=3))  # the compiles, before the clock
reference = None
for name, config in variants.items():
    start = time.perf_counter()
    result = ADC(config).run(problem, Budget(steps=args.steps))
    wall = time.perf_counter() - start
    losses = torch.tensor(result.history["loss/target"])
    reference = losses if reference is None else reference
    same = "bitwise" if torch.equal(losses, reference) else (
        "to 1e-4" if torch.allclose(losses, reference, atol=1e-4, rtol=0) else "differs")
    print(f"{name}: {args.steps} steps in {wall:.1f} s ({wall / args.steps:.3f} s a step), "
          f"loss history {same} against the preset's, judged LCS {result.metrics['eval/lcs_ratio']:.2f}", flush=True)
