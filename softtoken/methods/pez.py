"""PEZ: hard prompts by projected gradient descent in embedding space (Wen et al., arXiv 2302.03668).

The prompt is B continuous embedding sequences E (B x L x D), started at the embeddings of random allowed
tokens. Each step projects every row of E to its nearest prompt-vocabulary embedding P (cosine similarity,
as PEZ's `nn_project`, or dot product), runs the teacher-forced target loss on the projected prompt and
applies the gradient taken at P to E (straight-through; Algorithm 1 of PEZ), and AdamW (lr 0.1, weight
decay 0.1: PEZ's defaults) updates E. No logits over the vocabulary exist: the relaxation is the continuous
embedding, and what the model sees is always a discrete prompt. So the training forward's teacher-forced
argmax equals the target exactly when the projected prompt's greedy output does: success is detected for
free and confirmed by the shared greedy evaluator, which also judges the lowest-loss projected prompt
every `eval_every` steps.

    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = PEZ(pez_paper()).run(problem, Budget(steps=500))
    prompt_text, success = result.prompt_text, result.exact_match
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from softtoken.configcheck import check_types
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.harness import ConfiguredMethod
from softtoken.objectives import TargetCE

PROJECTIONS = ("cosine", "dot")


@dataclass(frozen=True, kw_only=True)
class PEZConfig:
    """Defaults are PEZ's (AdamW lr 0.1, weight decay 0.1, cosine nearest neighbour)."""

    epochs: int = 3000  # optimiser steps (PEZ's `iter`), >= 1
    batch_size: int = 4  # B prompts optimised in parallel (independent restarts), >= 1
    learning_rate: float = 0.1  # AdamW lr, > 0
    weight_decay: float = 0.1  # AdamW decoupled weight decay, >= 0
    projection: str = "cosine"  # nearest-neighbour score: cosine (PEZ) or dot product
    eval_every: int = 10  # steps between greedy evaluations of the lowest-loss projected prompt, >= 1
    compute_dtype: str = "float32"  # forward/backward under autocast; the judge stays float32

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "batch_size", "learning_rate", "eval_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PEZConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.weight_decay >= 0:
            raise ValueError(f"PEZConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"PEZConfig.projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"PEZConfig.compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}")


def projection_keys(matrix: torch.Tensor, projection: str = "cosine") -> torch.Tensor:
    """The rows (V, D) that vectors are scored against, from the prompt embeddings `matrix` (V, D).

    cosine: unit rows, since argmax_v cos(x, m_v) = argmax_v <x, m_v / |m_v|> (|x| is the same for every v;
    PEZ's `nn_project`); dot: the rows themselves. Computed once per run, not once per step."""
    return F.normalize(matrix, dim=-1) if projection == "cosine" else matrix


def nearest_rows(vectors: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Index of the best-scoring key (V, D) for every vector (..., D) -> (...,), by dot product."""
    return (vectors @ keys.T).argmax(-1)  # (..., V) -> (...,)


def straight_through(continuous: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
    """The value of `projected`, the gradient of `continuous` (both (B, L, D)).

    Written as P + (E - E.detach()) rather than E + (P - E).detach(): same gradient, but the value is P
    bit for bit (x - x is exactly 0), so the forward is exactly the discrete prompt's forward."""
    return projected.detach() + (continuous - continuous.detach())


@register_method("pez")
class PEZ(ConfiguredMethod):
    """PEZ: AdamW on continuous prompt embeddings, every forward on their nearest-token projection."""

    name = "pez"
    config_class = PEZConfig

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise E until exact match or the budget; return the best discrete (projected) prompt judged."""
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        objective = TargetCE()
        target = run.context.target_tensor(lm.device)  # (T,)
        shape = (cfg.batch_size, problem.prompt_length)
        start = torch.randint(0, lm.prompt_vocab_size, shape, generator=run.generator, device=lm.device)  # (B, L)
        continuous = lm.prompt_matrix[start].clone().requires_grad_(True)  # (B, L, D), float32
        optimizer = torch.optim.AdamW([continuous], lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        keys = projection_keys(lm.prompt_matrix, cfg.projection)  # (V, D)
        best_prompt = start[0]  # (L,)
        for step in run.steps():
            projected = nearest_rows(continuous.detach(), keys)  # (B, L)
            embeds = straight_through(continuous, lm.prompt_matrix[projected]).to(lm.dtype)  # (B, L, D)
            with lm.compute(cfg.compute_dtype):
                logits = lm.teacher_forced_logits(embeds, target)  # (B, T, V_out)
            losses = objective.reduce(logits, target)  # (B,)
            loss = losses.mean()
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"PEZ loss is {loss.item()} at step {step}; lower learning_rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # The forward was the projected prompts' own: a teacher-forced match is a greedy match.
            hits = (logits.detach().argmax(-1) == target).all(-1)  # (B,)
            best_prompt = projected[int(losses.detach().argmin())]  # (L,)
            run.log({"loss/target": loss.item(), "loss/target_best": losses.min().item()})
            if hits.any():
                run.evaluate_many(projected[hits])
            elif step % cfg.eval_every == 0 or step == run.max_steps:
                run.evaluate(best_prompt)
        return run.result(self.name, cfg, final=best_prompt, objective=objective)


def pez_paper() -> PEZConfig:
    """PEZ's defaults: AdamW lr 0.1, weight decay 0.1, cosine projection, 3000 steps; four parallel prompts."""
    return PEZConfig()
