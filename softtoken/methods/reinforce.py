"""REINFORCE: score-function gradients for language-model inversion (DLMI baseline, dlmi-reference.md §6.1).

The prompt is a logit matrix Z (L x V) over the prompt vocabulary. Each step samples B discrete prompts
x ~ softmax(Z), hard-embeds them, rolls the frozen model out greedily for T tokens and takes the per-sample
target cross-entropy as the loss (reward = -loss). Adam descends the surrogate mean_b A_b log pi(x_b). The
"batch" estimator reproduces the reference (one scalar batch advantage, inverted EMA updated before use,
so the first gradient is zero); "per_sample" is the textbook estimator with an EMA or leave-one-out
baseline. No gradient flows through the model, so a step costs forward passes only. Every sampled prompt
is scored by its greedy rollout, the argmax prompt every `eval_every` steps; the run stops on an exact match.

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = Reinforce(reinforce_paper()).run(problem, Budget(steps=200))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from softtoken.configcheck import check_types
from softtoken.lm.evaluation import score_outputs
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.diagnostics import (
    BASELINES,
    ESTIMATORS,
    ScoreFunction,
    estimate_gradient_variance,
    rollout_losses,
    sample_indices,
)
from softtoken.methods.harness import ConfiguredMethod, RunHarness
from softtoken.objectives import FreeRunningTargetCE
from softtoken.relax import initial_logits

INIT_STRATEGIES = ("randn", "zeros", "normal")
LOSSES = ("crossentropy",)
# Diagnostics draw from their own stream so that turning them on leaves the trajectory unchanged.
DIAGNOSTIC_SEED_OFFSET = 0x5EED


@dataclass(frozen=True, kw_only=True)
class ReinforceConfig:
    """Option names follow the DLMI reference's seed table (`reinforce_*`)."""

    batch_size: int = 8  # prompts sampled from softmax(Z) per step
    epochs: int = 2048  # optimiser steps
    learning_rate: float = 0.1  # Adam lr on Z
    init_strategy: str = "randn"  # randn N(0,1) (reference), zeros, normal N(0, init_std)
    init_std: float = 1.0
    reinforce_estimator: str = "per_sample"  # per_sample (textbook) or batch (reference, §6.1)
    reinforce_baseline: str = "loo"  # per_sample only: ema (of past batch means) or loo (leave-one-out)
    reinforce_use_baseline: bool = True
    reinforce_baseline_beta: float = 0.9  # in [0, 1]; batch: weight of the NEW loss (reference); ema: of the old
    reinforce_reward_scale: float = 1.0  # multiplies the surrogate, > 0
    reinforce_grad_variance_period: int = 25  # steps between variance measurements, >= 1
    reinforce_grad_variance_samples: int = 0  # gradient samples per measurement; 0 off, else >= 2
    losses: str = "crossentropy"
    eval_every: int = 10  # steps between argmax-prompt evaluations, >= 1

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("batch_size", "epochs", "learning_rate", "init_std", "reinforce_reward_scale",
                     "reinforce_grad_variance_period", "eval_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"ReinforceConfig.{name} must be > 0, got {getattr(self, name)}")
        choices = {"init_strategy": INIT_STRATEGIES, "losses": LOSSES,
                   "reinforce_estimator": ESTIMATORS, "reinforce_baseline": BASELINES}
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"ReinforceConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")
        if not 0 <= self.reinforce_baseline_beta <= 1:
            beta = self.reinforce_baseline_beta
            raise ValueError(f"ReinforceConfig.reinforce_baseline_beta must be in [0, 1], got {beta}")
        if self.reinforce_grad_variance_samples != 0 and self.reinforce_grad_variance_samples < 2:
            raise ValueError("ReinforceConfig.reinforce_grad_variance_samples must be 0 (off) or >= 2, "
                             f"got {self.reinforce_grad_variance_samples}")
        if self.uses_loo and self.batch_size < 2:
            raise ValueError(f"ReinforceConfig: the leave-one-out baseline needs batch_size >= 2, "
                             f"got {self.batch_size}")

    @property
    def uses_loo(self) -> bool:
        return (self.reinforce_estimator == "per_sample" and self.reinforce_use_baseline
                and self.reinforce_baseline == "loo")

    def score_function(self) -> ScoreFunction:
        return ScoreFunction(estimator=self.reinforce_estimator, use_baseline=self.reinforce_use_baseline,
                             baseline_beta=self.reinforce_baseline_beta, baseline=self.reinforce_baseline,
                             reward_scale=self.reinforce_reward_scale)



@register_method("reinforce")
class Reinforce(ConfiguredMethod):
    """Score-function (REINFORCE) optimisation of a categorical prompt distribution."""

    name = "reinforce"
    config_class = ReinforceConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Sample, roll out, descend the surrogate until exact match or the budget; return the best prompt."""
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        diag_generator = torch.Generator(device=lm.device).manual_seed(problem.seed + DIAGNOSTIC_SEED_OFFSET)
        target = torch.tensor(problem.target_ids, device=lm.device)
        std = {"zeros": 0.0, "randn": 1.0}.get(cfg.init_strategy, cfg.init_std)
        shape = (1, problem.prompt_length, lm.prompt_vocab_size)
        logits_z = initial_logits(shape, std=std, generator=run.generator, device=lm.device).requires_grad_(True)
        optimizer = torch.optim.Adam([logits_z], lr=cfg.learning_rate)
        score_fn = cfg.score_function()
        for step in run.steps():
            indices = sample_indices(logits_z[0], cfg.batch_size, run.generator)  # (B, L)
            losses, outputs = rollout_losses(lm, indices, target)  # (B,), (B, T)
            if not torch.isfinite(losses).all():
                raise NonFiniteLossError(f"REINFORCE loss is not finite at step {step}; check the model dtype")
            for score in score_outputs(lm.to_model_ids(indices), outputs, problem.target_ids):
                run.judge.best.offer(score, step)  # each sample's own rollout is its greedy decode
            optimizer.zero_grad(set_to_none=True)
            score_fn.surrogate(logits_z[0], indices, losses).backward()
            metrics = {"loss/target": losses.mean().item()}
            if cfg.reinforce_grad_variance_samples and step % cfg.reinforce_grad_variance_period == 0:
                run.record({"diag/step": step})
                metrics |= self._variance(run, logits_z, target, score_fn, diag_generator)
            optimizer.step()
            if step % cfg.eval_every == 0 or step == run.max_steps or run.judge.exact:
                run.evaluate(logits_z[0].detach().argmax(-1))
            run.log(metrics)
        if run.judge.best.score is not None:
            # Re-score the winner through the shared evaluator: sample scores came from the training rollout.
            run.judge.confirm_best()
        return run.result(self.name, cfg, final=logits_z[0].detach().argmax(-1), objective=FreeRunningTargetCE())

    def _variance(self, run: RunHarness, logits_z: torch.Tensor, target: torch.Tensor, score_fn: ScoreFunction,
                  generator: torch.Generator) -> dict[str, float]:
        """§6.4: the training gradient plus N-1 fresh samples that leave the running baseline untouched."""
        def sample() -> torch.Tensor:
            indices = sample_indices(logits_z[0], self.config.batch_size, generator)
            losses, _ = rollout_losses(run.lm, indices, target)
            surrogate = score_fn.surrogate(logits_z[0], indices, losses, update=False)
            return torch.autograd.grad(surrogate, logits_z)[0]

        return estimate_gradient_variance(sample, self.config.reinforce_grad_variance_samples,
                                          prefix="diag/reinforce_grad", first=logits_z.grad)


def reinforce_paper() -> ReinforceConfig:
    """The reference's REINFORCE (§6.1, seed table): scalar batch advantage, inverted EMA beta 0.9, lr 0.1, B=8."""
    return ReinforceConfig(reinforce_estimator="batch", reinforce_use_baseline=True, reinforce_baseline_beta=0.9,
                           reinforce_reward_scale=1.0, learning_rate=0.1, batch_size=8, epochs=2048)


def reinforce_default() -> ReinforceConfig:
    """REINFORCE done right: per-sample advantages with a leave-one-out baseline, otherwise as the paper."""
    return replace(reinforce_paper(), reinforce_estimator="per_sample", reinforce_baseline="loo")
