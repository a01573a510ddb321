"""PGD: projected gradient descent on relaxed one-hot prompts (after Geisler et al. 2024, "Attacking Large Language
Models with Projected Gradient Descent", arXiv 2402.09154).

The prompt is B relaxed prompts X (B x L x V), every row a point of the probability simplex over the prompt
vocabulary, started at softmax(N(0, 1) logits) as ADC's. Each step takes the teacher-forced target loss of X (the
mixture X @ W_emb is the prompt), clips each position's gradient to an L2 norm of at most `grad_clip`, makes an
Adam step (lr after a linear warm-up), and projects every row back: onto the simplex (Euclidean), then onto the
rows of Tsallis-2 entropy at most a bound that tightens linearly from none (1) to `entropy_bound` over
`entropy_anneal_steps`, which pulls the rows toward one-hot and so closes the gap between the relaxed loss and
the argmax prompt's. The argmax prompts are scored discretely every step (the paper's discretisation); each
prompt keeps its lowest discrete loss and restarts one-hot from that prompt after `patience` steps without a
lower one. A discrete teacher-forced exact match is a greedy match, confirmed by the shared judge, which also
judges the lowest discrete-loss prompt every `eval_every` steps.

Left out of the paper's recipe: cosine warm restarts of the lr, the entropy bound scaled by the lr and by the
relaxed-discrete loss gap, and re-tokenising the argmax (the judge reports whether a prompt survives the text
round trip).

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = PGD(pgd_paper()).run(problem, Budget(steps=500))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from softtoken.configcheck import check_types
from softtoken.engine.schedules import linear
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.harness import ConfiguredMethod, RunHarness
from softtoken.objectives import TargetCE
from softtoken.relax import project_entropy, project_simplex, simplex_start, tsallis_entropy


@dataclass(frozen=True, kw_only=True)
class PGDConfig:
    """Defaults are Geisler et al.'s (Adam lr 0.11, 100 warm-up steps, gradient clip 20, entropy bound 0.4 reached
    over 250 steps, patience 100), with four parallel prompts."""

    epochs: int = 5000  # optimiser steps, >= 1
    batch_size: int = 4  # B relaxed prompts optimised in parallel (independent starts), >= 1
    learning_rate: float = 0.11  # Adam lr after the warm-up, > 0
    warmup_steps: int = 100  # steps of linear lr warm-up (step k of them uses lr * k / warmup_steps), >= 0
    grad_clip: float = 20.0  # largest L2 norm of one position's gradient (clipped per position), > 0
    entropy_bound: float = 0.4  # Tsallis-2 entropy every row is held at or below once annealed, in [0, 1)
    entropy_anneal_steps: int = 250  # steps over which the bound falls linearly from 1 (none) to it, >= 0
    patience: int = 100  # steps without a lower discrete loss before a prompt restarts from its best, >= 0; 0: off
    init_std: float = 1.0  # std of the N(0, std^2) logits whose softmax is the start, >= 0 (0: uniform)
    eval_every: int = 10  # steps between greedy evaluations of the lowest discrete-loss prompt, >= 1
    compute_dtype: str = "float32"  # forward/backward under autocast; the judge stays float32

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "batch_size", "learning_rate", "grad_clip", "eval_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PGDConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("warmup_steps", "entropy_anneal_steps", "patience", "init_std"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PGDConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.entropy_bound < 1:
            raise ValueError(f"PGDConfig.entropy_bound must be in [0, 1), got {self.entropy_bound}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"PGDConfig.compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")

    def learning_rate_at(self, step: int) -> float:
        """The lr of step `step` (1-based): linear warm-up to `learning_rate`, then constant."""
        return linear(0.0, self.learning_rate)(step, self.warmup_steps) if self.warmup_steps else self.learning_rate

    def entropy_bound_at(self, step: int) -> float:
        """The entropy bound after step `step` (1-based): from 1 (no row is above it) down to `entropy_bound`."""
        if not self.entropy_anneal_steps:
            return self.entropy_bound
        return linear(1.0, self.entropy_bound)(step, self.entropy_anneal_steps)


def clip_rows_(grad: torch.Tensor, max_norm: float) -> None:
    """Scale in place every row of grad (..., V) whose L2 norm exceeds max_norm down to max_norm."""
    norms = grad.norm(dim=-1, keepdim=True)  # (..., 1)
    grad.mul_((max_norm / norms.clamp_min(torch.finfo(grad.dtype).tiny)).clamp_max(1))


@register_method("pgd")
class PGD(ConfiguredMethod):
    """PGD: Adam on simplex rows, projected onto the simplex and a shrinking entropy bound each step."""

    name = "pgd"
    config_class = PGDConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise X until exact match or the budget; return the best discrete prompt judged."""
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        objective = TargetCE()
        target = run.context.target_tensor(lm.device)  # (T,)
        shape = (cfg.batch_size, problem.prompt_length, lm.prompt_vocab_size)
        relaxed = simplex_start(shape, std=cfg.init_std, generator=run.generator, device=lm.device)  # (B, L, V)
        relaxed.requires_grad_(True)
        optimizer = torch.optim.Adam([relaxed], lr=cfg.learning_rate)
        best_losses = torch.full((cfg.batch_size,), torch.inf, device=lm.device)  # (B,) lowest discrete loss
        best_prompts = relaxed.detach().argmax(-1)  # (B, L) the prompts that reached them
        stalled = torch.zeros(cfg.batch_size, dtype=torch.long, device=lm.device)  # (B,) steps since
        for step in run.steps():
            prompts = relaxed.detach().argmax(-1)  # (B, L)
            with lm.compute(cfg.compute_dtype):
                losses, _ = objective.loss_and_predictions(lm, relaxed, run.context)  # (B,)
                with torch.no_grad():
                    hard_losses, predictions = objective.hard_loss_and_predictions(lm, prompts, run.context)
            if not torch.isfinite(losses).all():
                raise NonFiniteLossError(f"PGD loss is {losses.mean().item()} at step {step}; lower learning_rate")
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # each prompt's own gradient, whatever B: the clip is per prompt and position
            clip_rows_(relaxed.grad, cfg.grad_clip)
            optimizer.param_groups[0]["lr"] = cfg.learning_rate_at(step)
            optimizer.step()
            with torch.no_grad():
                relaxed.copy_(project_entropy(project_simplex(relaxed), cfg.entropy_bound_at(step)))
            improved = hard_losses < best_losses  # (B,)
            best_losses = torch.where(improved, hard_losses, best_losses)
            best_prompts = torch.where(improved[:, None], prompts, best_prompts)
            stalled = torch.where(improved, 0, stalled + 1)
            if cfg.patience:
                stalled = self._restart_stalled(optimizer, relaxed, best_prompts, stalled)
            hits = (predictions == target).all(-1)  # (B,) discrete teacher-forced exact: a greedy match
            run.log({"loss/target": losses.mean().item(), "loss/target_best": losses.min().item(),
                     "loss/discrete_best": best_losses.min().item(),
                     "relax/entropy": tsallis_entropy(relaxed.detach()).mean().item()})
            if hits.any():
                run.evaluate_many(prompts[hits])
            elif step % cfg.eval_every == 0 or step == run.max_steps:
                run.evaluate(best_prompts[int(best_losses.argmin())])
        return run.result(self.name, cfg, final=best_prompts[int(best_losses.argmin())], objective=objective)

    def _restart_stalled(self, optimizer: torch.optim.Adam, relaxed: torch.Tensor, best_prompts: torch.Tensor,
                         stalled: torch.Tensor) -> torch.Tensor:
        """Set the prompts stalled for `patience` steps one-hot at their best discrete prompt (best_prompts
        (B, L)), with their Adam moments cleared; returns the stall counts (B,) with theirs reset."""
        due = stalled >= self.config.patience  # (B,)
        which = due.nonzero().flatten()  # (K,)
        if which.numel():
            with torch.no_grad():
                relaxed[which] = F.one_hot(best_prompts[which], relaxed.shape[-1]).to(relaxed.dtype)
            for moment in ("exp_avg", "exp_avg_sq"):
                optimizer.state[relaxed][moment][which] = 0
        return torch.where(due, 0, stalled)


def pgd_paper() -> PGDConfig:
    """Geisler et al.'s hyper-parameters (Adam lr 0.11, warm-up 100, clip 20, entropy bound 0.4 over 250 steps,
    patience 100) for their 5000 steps; four parallel prompts."""
    return PGDConfig()


def pgd_short() -> PGDConfig:
    """`pgd` with its schedules shortened for runs of a few hundred steps (a 180 s CPU run makes about 200): lr
    warm-up 5 steps, the entropy bound reached over 100, patience 50 (the least bad of four settings tried on two
    natural targets at 90 s, docs/benchmarks.md §6)."""
    return replace(pgd_paper(), warmup_steps=5, entropy_anneal_steps=100, patience=50)
