"""SODA: exact inversion by Adam on a low-temperature softmax prompt (Skapars et al., arXiv 2507.01693).

The prompt is a logit matrix Z (L x V) over the prompt vocabulary, fed as softmax(Z / tau) with tau = 0.05
mixed into token embeddings, followed by the target (teacher forcing, one forward pass). The loss is the
margin -mean_t(log p(y_t) - max_v log p(v)), zero exactly when every target token is the teacher-forced
argmax. Adam *without* bias correction updates Z; after every step Z decays (Z <- decay * Z), the Adam
state is deleted every `soda_reset_epoch` steps and Z is re-drawn from N(0, 0.1^2) every
`soda_reinit_epoch` steps. The discrete prompt argmax Z is greedy-decoded every `eval_every` steps and the
best one seen is kept across re-initialisations; the run stops on an exact match. Settings follow
dlmi-reference.md §7.1 and the seed table; the Adam below is written from its equations, not copied.

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = Soda(soda_paper()).run(problem, Budget(steps=500))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softtoken.methods.base import (
    Budget,
    ConfiguredMethod,
    NonFiniteLossError,
    NullTracker,
    Problem,
    Result,
    Tracker,
    register_method,
)
from softtoken.methods.monitoring import PromptJudge, build_result, record_eval

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


def margin_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-mean_{b,t}(log p(y_t) - max_v log p(v)) for logits (B, T, V_out) and target (T,) -> scalar, >= 0."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V_out)
    chosen = log_probs.gather(-1, target.view(1, -1, 1).expand(log_probs.shape[0], -1, 1)).squeeze(-1)
    return -(chosen - log_probs.max(-1).values).mean()


class SodaAdam:
    """Adam on one tensor with optional bias correction and a state that can be deleted."""

    def __init__(self, param: torch.Tensor, *, lr: float, betas: tuple[float, float], eps: float,
                 bias_correction: bool) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.bias_correction = bias_correction
        self.reset()

    def reset(self) -> None:
        """Delete the moment estimates; the next step starts from zero moments as at t = 0."""
        self.steps = 0
        self.exp_avg: torch.Tensor | None = None
        self.exp_avg_sq: torch.Tensor | None = None

    @torch.no_grad()
    def step(self) -> None:
        grad, (beta1, beta2) = self.param.grad, self.betas
        if self.exp_avg is None:
            self.exp_avg, self.exp_avg_sq = torch.zeros_like(grad), torch.zeros_like(grad)
        self.steps += 1
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m, v = self.exp_avg, self.exp_avg_sq
        if self.bias_correction:
            m, v = m / (1 - beta1**self.steps), v / (1 - beta2**self.steps)
        self.param.sub_(self.lr * m / (v.sqrt() + self.eps))


def init_logits(strategy: str, std: float, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    """Zeros or N(0, std^2) logits of `shape`, float32."""
    if strategy == "zeros":
        return torch.zeros(shape, device=device)
    return std * torch.randn(shape, generator=generator, device=device)


@register_method("soda")
class Soda(ConfiguredMethod):
    """SODA: margin loss on a tau=0.05 softmax prompt, bias-free Adam, decay, resets and re-inits."""

    name = "soda"
    config_class = SodaConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise Z until exact match or the budget; return the best discrete prompt seen."""
        cfg, lm, tracker = self.config, problem.lm, tracker or NullTracker()
        budget, clock, total, generator = self.start(problem, budget)
        target = torch.tensor(problem.target_ids, device=lm.device)
        shape, per_pass = (1, problem.prompt_length, lm.prompt_vocab_size), problem.prompt_length + target.numel() - 1
        logits_z = init_logits(cfg.soda_init_strategy, cfg.soda_init_std, shape, generator, lm.device)
        logits_z.requires_grad_(True)
        optimizer = SodaAdam(logits_z, lr=cfg.learning_rate, betas=(cfg.soda_beta1, cfg.soda_beta2),
                             eps=cfg.soda_adam_eps, bias_correction=cfg.soda_bias_correction)
        judge, train_tokens, step = PromptJudge(problem), 0, 0
        history: dict[str, list] = {"loss": [], "eval_step": [], "eval_lcs_ratio": [], "eval_exact_match": [],
                                    "reset_step": [], "reinit_step": []}
        while step < total and not clock.expired() and not budget.compute_spent(train_tokens + judge.eval_tokens):
            step += 1
            probs = torch.softmax(logits_z / cfg.temperature, dim=-1)  # (1, L, V)
            loss = margin_loss(lm.teacher_forced_logits(lm.embed_probs(probs), target), target)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"SODA loss is {loss.item()} at step {step}; lower learning_rate")
            logits_z.grad = None
            loss.backward()
            optimizer.step()
            train_tokens += per_pass
            with torch.no_grad():
                logits_z.mul_(cfg.soda_decay_rate)  # parameter decay after every step
            self._schedule(step, optimizer, logits_z, generator, history)
            history["loss"].append(loss.item())
            if step % cfg.eval_every == 0 or step == total:
                score = judge.score(logits_z[0].detach().argmax(-1), step)
                record_eval(history, step, score)
                tracker.log(step, {"loss/soda_margin": loss.item(), "eval/lcs_ratio": score.lcs_ratio,
                                   "eval/best_lcs_ratio": judge.best.score.lcs_ratio})
                if judge.exact:
                    break
        if judge.best.score is None:  # the time budget ran out before the first evaluation
            judge.score(logits_z[0].detach().argmax(-1), step)
        return build_result(self.name, cfg, problem, judge, history, steps=step,
                            forward_tokens=train_tokens + judge.eval_tokens, backward_tokens=train_tokens, clock=clock)

    def _schedule(self, step: int, optimizer: SodaAdam, logits_z: torch.Tensor, generator: torch.Generator,
                  history: dict) -> None:
        """Delete the Adam state every soda_reset_epoch steps; re-draw Z every soda_reinit_epoch steps."""
        cfg = self.config
        if step % cfg.soda_reset_epoch == 0:
            optimizer.reset()
            history["reset_step"].append(step)
        if step % cfg.soda_reinit_epoch == 0:
            with torch.no_grad():
                logits_z.copy_(init_logits("normal", cfg.soda_reinit_std, tuple(logits_z.shape), generator,
                                           logits_z.device))
            history["reinit_step"].append(step)


def soda_paper() -> SodaConfig:
    """SODA as swept in the DLMI reference (§7.1): tau 0.05, lr 0.03, betas (0.9, 0.995), decay 0.98, zero init,
    reset every 50 steps, re-init every 1500."""
    return SodaConfig()
