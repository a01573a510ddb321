"""SODA: exact inversion by Adam on a low-temperature softmax prompt (Skapars et al., arXiv 2507.01693).

The prompt is a logit matrix Z (L x V) over the prompt vocabulary, fed as softmax(Z / tau) with tau = 0.05
mixed into token embeddings, followed by the target (teacher forcing, one forward pass). The loss is the
margin -mean_t(log p(y_t) - max_v log p(v)), zero exactly when every target token is the teacher-forced
argmax. Adam *without* bias correction updates Z; after every step Z decays (Z <- decay * Z), the Adam
state is deleted every `soda_reset_epoch` steps and Z is re-drawn from N(0, 0.1^2) every
`soda_reinit_epoch` steps. The discrete prompt argmax Z is greedy-decoded every `eval_every` steps and the
best one seen is kept across re-initialisations; the run stops on an exact match. Settings follow
dlmi-reference.md §7.1 and the seed table; the Adam is torch's, without bias correction
(engine.optimizers.UncorrectedAdam).

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = Soda(soda_paper()).run(problem, Budget(steps=500))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softtoken.configcheck import check_types
from softtoken.engine.optimizers import UncorrectedAdam
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.harness import ConfiguredMethod, RunHarness
from softtoken.objectives import TargetCE
from softtoken.relax import initial_logits

INIT_STRATEGIES = ("zeros", "normal")


@dataclass(frozen=True, kw_only=True)
class SodaConfig:
    """Option names follow the DLMI reference's seed table (`soda_*`); defaults are its SODA sweep."""

    epochs: int = 2048  # optimiser steps
    learning_rate: float = 0.03  # the sweeps' lr (SODA's own default is 0.065)
    temperature: float = 0.05  # tau of softmax(Z / tau), > 0
    soda_beta1: float = 0.9  # Adam beta1, in [0, 1)
    soda_beta2: float = 0.995  # Adam beta2, in [0, 1)
    soda_adam_eps: float = 1e-8
    soda_bias_correction: bool = False  # True: standard Adam
    soda_decay_rate: float = 0.98  # Z <- decay * Z after every step, in (0, 1]
    soda_init_strategy: str = "zeros"  # zeros or normal N(0, soda_init_std^2)
    soda_init_std: float = 0.05
    soda_reset_epoch: int = 50  # delete the Adam state every this many steps, >= 1
    soda_reinit_epoch: int = 1500  # re-draw Z ~ N(0, soda_reinit_std^2) every this many steps, >= 1
    soda_reinit_std: float = 0.1
    eval_every: int = 10  # steps between discrete evaluations, >= 1

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "learning_rate", "temperature", "soda_adam_eps", "soda_decay_rate", "soda_init_std",
                     "soda_reset_epoch", "soda_reinit_epoch", "soda_reinit_std", "eval_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SodaConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("soda_beta1", "soda_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"SodaConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if self.soda_decay_rate > 1:
            raise ValueError(f"SodaConfig.soda_decay_rate must be in (0, 1], got {self.soda_decay_rate}")
        if self.soda_init_strategy not in INIT_STRATEGIES:
            raise ValueError(f"SodaConfig.soda_init_strategy must be one of {INIT_STRATEGIES}, "
                             f"got {self.soda_init_strategy!r}")


@register_method("soda")
class Soda(ConfiguredMethod):
    """SODA: margin loss on a tau=0.05 softmax prompt, bias-free Adam, decay, resets and re-inits."""

    name = "soda"
    config_class = SodaConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise Z until exact match or the budget; return the best discrete prompt seen."""
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        objective = TargetCE(token_loss="margin")
        std = 0.0 if cfg.soda_init_strategy == "zeros" else cfg.soda_init_std
        shape = (1, problem.prompt_length, lm.prompt_vocab_size)
        logits_z = initial_logits(shape, std=std, generator=run.generator, device=lm.device).requires_grad_(True)
        optimizer = self.optimizer(logits_z)
        for step in run.steps():
            probs = torch.softmax(logits_z / cfg.temperature, dim=-1)  # (1, L, V)
            loss = objective.loss(lm, probs, run.context).mean()
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"SODA loss is {loss.item()} at step {step}; lower learning_rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                logits_z.mul_(cfg.soda_decay_rate)  # parameter decay after every step
            self._schedule(run, optimizer, logits_z)
            run.log({"loss/target": loss.item()})
            if step % cfg.eval_every == 0 or step == run.max_steps:
                run.evaluate(logits_z[0].detach().argmax(-1))
        return run.result(self.name, cfg, final=logits_z[0].detach().argmax(-1), objective=objective)

    def optimizer(self, logits_z: torch.Tensor) -> torch.optim.Adam:
        cfg = self.config
        betas = (cfg.soda_beta1, cfg.soda_beta2)
        if cfg.soda_bias_correction:
            return torch.optim.Adam([logits_z], lr=cfg.learning_rate, betas=betas, eps=cfg.soda_adam_eps)
        return UncorrectedAdam([logits_z], lr=cfg.learning_rate, betas=betas, eps=cfg.soda_adam_eps)

    def _schedule(self, run: RunHarness, optimizer: torch.optim.Adam, logits_z: torch.Tensor) -> None:
        """Delete the Adam state every soda_reset_epoch steps; re-draw Z every soda_reinit_epoch steps."""
        cfg, step = self.config, run.step
        if step % cfg.soda_reset_epoch == 0:
            optimizer.state.clear()
            run.record({"search/reset_step": step})
        if step % cfg.soda_reinit_epoch == 0:
            with torch.no_grad():
                logits_z.copy_(initial_logits(tuple(logits_z.shape), std=cfg.soda_reinit_std,
                                              generator=run.generator, device=logits_z.device))
            run.record({"search/reinit_step": step})


def soda_paper() -> SodaConfig:
    """SODA as swept in the DLMI reference (§7.1): tau 0.05, lr 0.03, betas (0.9, 0.995), decay 0.98, zero init,
    reset every 50 steps, re-init every 1500."""
    return SodaConfig()
