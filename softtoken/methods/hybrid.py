"""Relax, then search: a relaxed exploration (DLMI or ADC) whose best discrete prompt seeds a GCG polish.

The relaxed phase gets `relax_fraction` of the wall-clock (and forward-token) budget; GCG starts from the
best discrete prompt the relaxed phase's judge kept (hard samples are discrete prompts, scored for free)
and spends the rest. The result is the better of the two phases' prompts (exact match, then LCS), with
steps, tokens and wall time summed; the relaxed phase's history keys carry a `relax/` prefix.

    result = RelaxThenSearch(relax_then_gcg()).run(problem, Budget(seconds=180))
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch

from softtoken.configcheck import check_types
from softtoken.methods.adc import ADC, ADCConfig, adc_polish
from softtoken.methods.base import Budget, Problem, Result, Tracker, register_method
from softtoken.methods.dlmi import DLMI, DLMIConfig, dlmi_demo
from softtoken.methods.gcg import GCG, GCGConfig, gcg_fast
from softtoken.methods.harness import ConfiguredMethod


# The relaxed phase's method, by the class of its config.
RELAX_METHODS = {DLMIConfig: DLMI, ADCConfig: ADC}


@dataclass(frozen=True, kw_only=True)
class RelaxThenSearchConfig:
    relax: DLMIConfig | ADCConfig = field(default_factory=lambda: replace(dlmi_demo(), compute_dtype="auto"))
    search: GCGConfig = field(default_factory=gcg_fast)
    relax_fraction: float = 0.3  # share of the seconds / forward-token budget for the relaxed phase, in [0, 1)
    relax_steps: int = 100  # the relaxed phase's step limit when the budget has no seconds or tokens
    epochs: int = 250  # GCG steps when the budget gives none

    def __post_init__(self) -> None:
        check_types(self)
        if not 0 <= self.relax_fraction < 1:
            raise ValueError(f"RelaxThenSearchConfig.relax_fraction must be in [0, 1), got {self.relax_fraction}")
        for name in ("relax_steps", "epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"RelaxThenSearchConfig.{name} must be >= 1, got {getattr(self, name)}")


@register_method("relax-then-search")
class RelaxThenSearch(ConfiguredMethod):
    """A relaxed exploration (DLMI or ADC) for a share of the budget, then GCG from its best discrete prompt."""

    name = "relax-then-search"
    config_class = RelaxThenSearchConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        cfg, budget = self.config, budget or Budget()
        relax_method = RELAX_METHODS[type(cfg.relax)](cfg.relax)
        relaxed = relax_method.run(problem, self._share(budget, cfg.relax_fraction, cfg.relax_steps), tracker)
        if relaxed.exact_match or cfg.relax_fraction == 0:
            return self._combine(problem, relaxed, None)
        remaining = Budget(steps=budget.resolve_steps(cfg.epochs),
                           seconds=None if budget.seconds is None else max(budget.seconds - relaxed.wall_time_s, 1e-3),
                           forward_tokens=None if budget.forward_tokens is None
                           else max(budget.forward_tokens - relaxed.forward_tokens, 1))
        ids = torch.tensor(relaxed.prompt_ids, device=problem.lm.device)
        start = (problem.lm.allowed_ids[None, :] == ids[:, None]).float().argmax(-1)  # model ids -> (L,) indices
        return self._combine(problem, relaxed, GCG(cfg.search).run(problem, remaining, tracker, initial=start))

    @staticmethod
    def _share(budget: Budget, fraction: float, steps: int) -> Budget:
        return Budget(steps=steps if budget.seconds is None and budget.forward_tokens is None else 10**9,
                      seconds=None if budget.seconds is None else budget.seconds * fraction,
                      forward_tokens=None if budget.forward_tokens is None
                      else max(int(budget.forward_tokens * fraction), 1))

    def _combine(self, problem: Problem, relaxed: Result, searched: Result | None) -> Result:
        if searched is None:
            return replace(relaxed, method=self.name, config=asdict(self.config))
        best = max((searched, relaxed), key=lambda r: (r.exact_match, r.metrics["eval/lcs_ratio"]))
        success_step = None if best.success_step is None else best.success_step + (
            relaxed.steps_run if best is searched else 0)
        history = {**searched.history, **{f"relax/{key}": value for key, value in relaxed.history.items()}}
        return replace(best, method=self.name, config=asdict(self.config), success_step=success_step,
                       steps_run=relaxed.steps_run + searched.steps_run,
                       wall_time_s=relaxed.wall_time_s + searched.wall_time_s,
                       forward_tokens=relaxed.forward_tokens + searched.forward_tokens,
                       backward_tokens=relaxed.backward_tokens + searched.backward_tokens, history=history)



def adc_then_gcg() -> RelaxThenSearchConfig:
    """`adc-polish` for 85 % of the budget, then `gcg-fast` from the best discrete prompt ADC's judge kept: every
    `adc-polish` success on the natural set came before 85 % of its 180 s (the latest at 152 s), so the tail
    only spends time ADC had not turned into a hit, on a GCG search from its near miss."""
    return RelaxThenSearchConfig(relax=adc_polish(), search=gcg_fast(), relax_fraction=0.85)
