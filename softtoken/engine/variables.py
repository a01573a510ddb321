"""What a stage updates: the prompt logits Z (B, L, V), optional learnt temperatures, objective parameters.

Learnt temperatures follow the DLMI reference: tau = eps + tau0 (1 + tanh theta), one theta per
trajectory (`shared`) or per trajectory and position (`per_position`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from softtoken.engine.config import StageConfig
from softtoken.engine.optimizers import build_update_rule
from softtoken.objectives.base import Objective

TEMPERATURE_EPS = 1e-10


class StageVariables:
    """The stage's learnable tensors and their update rules."""

    def __init__(self, config: StageConfig, logits: torch.Tensor, objectives: Sequence[Objective],
                 generator: torch.Generator) -> None:
        self.config, self.logits = config, logits  # (B, L, V)
        self.rule = build_update_rule(config.optimizer)
        self.theta = _initial_theta(config, logits, generator)  # (B, n, 1) or None
        self.theta_rule = build_update_rule(config.optimizer) if self.theta is not None else None
        self.aux = [p for objective in objectives for p in objective.parameters()]
        lr = config.temperature_lr or config.lr
        self.aux_optimizer = torch.optim.Adam(self.aux, lr=lr) if self.aux else None

    def with_logits(self, logits: torch.Tensor) -> StageVariables:
        """A copy that scores other logits with the same temperatures (for snapshots)."""
        probe = copy.copy(self)
        probe.logits = logits
        return probe

    @property
    def tau0(self) -> float:
        return self.config.temperature.start

    def temperature(self, theta: torch.Tensor | None, scheduled: float) -> torch.Tensor | float:
        """Effective temperature: (B, n, 1) when learnt, else the scheduled float."""
        if theta is None:
            return scheduled
        return TEMPERATURE_EPS + self.tau0 * (1.0 + torch.tanh(theta))

    def temperature_table(self, scheduled: float) -> torch.Tensor:
        """(B, n) effective temperatures for logs and results."""
        value = self.temperature(self.theta, scheduled)
        if isinstance(value, float):
            return torch.full((self.logits.shape[0], 1), value)
        return value.detach().squeeze(-1)

    def update(self, direction: torch.Tensor, theta_grad: torch.Tensor | None, aux_grads: Sequence[torch.Tensor],
               lr: float, step: int) -> None:
        """One step of every update rule; theta and objective parameters use temperature_lr (or lr)."""
        self.logits = self.rule.step(self.logits, direction, lr, step)
        side_lr = self.config.temperature_lr or lr
        if self.theta is not None and theta_grad is not None:
            self.theta = self.theta_rule.step(self.theta, theta_grad, side_lr, step)
        if self.aux_optimizer is not None:
            for parameter, grad in zip(self.aux, aux_grads, strict=True):
                parameter.grad = grad
            for group in self.aux_optimizer.param_groups:
                group["lr"] = side_lr
            self.aux_optimizer.step()


def _initial_theta(config: StageConfig, logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
    if config.learnable_temperature == "none":
        return None
    batch, length = logits.shape[0], logits.shape[1]
    num = length if config.learnable_temperature == "per_position" else 1
    if config.temperature_theta_init == "zero":
        return torch.zeros(batch, num, 1, device=logits.device)
    return torch.rand(batch, num, generator=generator, device=logits.device).unsqueeze(-1)
