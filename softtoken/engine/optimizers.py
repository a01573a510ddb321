"""Update rules for the prompt logits, with trajectories as the batch axis.

Written out rather than torch.optim because the learning rate changes every step (schedules,
temperature scaling) and the merged gradient is computed by the engine, not by autograd on a
parameter. Every trajectory has its own state rows, so trajectories never share moments.

    rule = build_update_rule(OptimizerConfig(kind="adam"))
    logits = rule.step(logits, grad, lr=0.1, step=1)  # (B, L, V)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

UPDATE_RULES: dict[str, type[UpdateRule]] = {}


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Which update rule, and Adam's constants (ignored by sgd)."""

    kind: str = "adam"  # a key of UPDATE_RULES
    beta1: float = 0.9  # first-moment decay, in [0, 1)
    beta2: float = 0.999  # second-moment decay, in [0, 1)
    eps: float = 1e-8  # added to sqrt(v_hat), > 0

    def __post_init__(self) -> None:
        if self.kind not in UPDATE_RULES:
            raise ValueError(f"OptimizerConfig.kind must be one of {sorted(UPDATE_RULES)}, got {self.kind!r}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"OptimizerConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.eps > 0:
            raise ValueError(f"OptimizerConfig.eps must be > 0, got {self.eps}")


class UpdateRule:
    """z <- update(z, g, lr) for logits (B, L, V); lr is a float or one value per trajectory (B,)."""

    def __init__(self, config: OptimizerConfig) -> None:
        self.config = config

    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor, step: int) -> torch.Tensor:
        raise NotImplementedError


def register_update_rule(name: str) -> Callable[[type[UpdateRule]], type[UpdateRule]]:
    """Class decorator adding an UpdateRule to UPDATE_RULES under `name`."""

    def add(cls: type[UpdateRule]) -> type[UpdateRule]:
        if name in UPDATE_RULES:
            raise ValueError(f"update rule {name!r} is already registered")
        UPDATE_RULES[name] = cls
        return cls

    return add


def build_update_rule(config: OptimizerConfig) -> UpdateRule:
    return UPDATE_RULES[config.kind](config)


def _per_trajectory(lr: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) learning rate broadcast against (B, L, V)."""
    lr_t = torch.as_tensor(lr, dtype=like.dtype, device=like.device)
    return lr_t.reshape(-1, 1, 1) if lr_t.ndim == 1 else lr_t


@register_update_rule("sgd")
class SGD(UpdateRule):
    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor, step: int) -> torch.Tensor:
        return logits - _per_trajectory(lr, logits) * grad


@register_update_rule("adam")
class Adam(UpdateRule):
    """Adam (Kingma & Ba 2015) with bias correction by the stage's 1-based step.

    The arithmetic follows torch.optim.Adam's single-tensor path operation for operation, so a
    stage reproduces a torch.optim run bit for bit (tests/engine/test_optimizers.py).
    """

    def __init__(self, config: OptimizerConfig) -> None:
        super().__init__(config)
        self.first: torch.Tensor | None = None  # (B, L, V)
        self.second: torch.Tensor | None = None  # (B, L, V)

    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float | torch.Tensor, step: int) -> torch.Tensor:
        if step < 1:
            raise ValueError(f"Adam step must be >= 1 (bias correction), got {step}")
        beta1, beta2 = self.config.beta1, self.config.beta2
        if self.first is None or self.second is None:
            self.first, self.second = torch.zeros_like(grad), torch.zeros_like(grad)
        self.first = self.first.lerp(grad, 1.0 - beta1)
        self.second = (self.second * beta2).addcmul(grad, grad, value=1.0 - beta2)
        correction1, correction2 = 1.0 - beta1**step, 1.0 - beta2**step
        denominator = (self.second.sqrt() / correction2**0.5).add(self.config.eps)
        if isinstance(lr, torch.Tensor):
            return logits - (_per_trajectory(lr, logits) / correction1) * (self.first / denominator)
        return torch.addcdiv(logits, self.first, denominator, value=-lr / correction1)
