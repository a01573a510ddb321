"""Where an `adc-polish` run's time goes (docs/benchmarks.md §6, issue 12): a cProfile of one run on a natural
target for SECONDS, one thread, printed as the seconds in the forward of the loss, the backward and the judge's
greedy decoding, against the run's wall time and steps.

Usage: python bench/screens/profile_adc.py [SECONDS]   (default 40; target natural_15)
"""

import cProfile
import pstats
import sys

import torch

from softtoken.lm.softlm import as_softlm
from softtoken.methods.adc import ADC, adc_polish
from softtoken.methods.base import Budget, Problem

TARGET_TEXT = " in the study, 15 were women and"  # natural_15's target
PARTS = {"loss forward": "loss_and_predictions", "backward": "_engine_run_backward",
         "judge's greedy decoding": "greedy_generate"}  # part -> the function whose cumulative time it is

torch.set_num_threads(1)
lm = as_softlm(None)
problem = Problem(lm=lm, target_ids=tuple(lm.encode(TARGET_TEXT)), prompt_length=10, seed=0)
profiler = cProfile.Profile()
profiler.enable()
result = ADC(adc_polish()).run(problem, Budget(seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 40.0))
profiler.disable()
cumulative = {function[2]: row[3] for function, row in pstats.Stats(profiler).stats.items()}  # name -> cum. s
print(f"{result.steps_run} steps in {result.wall_time_s:.1f} s")
for part, name in PARTS.items():
    print(f"{part}: {cumulative.get(name, 0.0):.1f} s ({cumulative.get(name, 0.0) / result.wall_time_s:.0%})")
