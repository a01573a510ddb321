"""Update rules for the prompt logits, with trajectories as the batch axis, and the Adam variants.

Adam is torch.optim.Adam: the engine's rule holds the logits as its one parameter, hands it the merged
gradient the engine computed and sets the step's learning rate (schedules, temperature scaling) on the
parameter group. Adam is elementwise, so trajectories never share moments. `UncorrectedAdam` is SODA's
Adam without bias correction, as a subclass that rescales lr and eps per step.

    rule = build_update_rule(OptimizerConfig(kind="adam"))
    logits = rule.step(logits, grad, lr=0.1, step=1)  # (B, L, V)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from softtoken.configcheck import check_types

UPDATE_RULES: dict[str, type[UpdateRule]] = {}


@dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """Which update rule, and Adam's constants (ignored by sgd)."""

    kind: str = "adam"  # a key of UPDATE_RULES
    beta1: float = 0.9  # first-moment decay, in [0, 1)
    beta2: float = 0.999  # second-moment decay, in [0, 1)
    eps: float = 1e-8  # added to sqrt(v_hat), > 0

    def __post_init__(self) -> None:
        check_types(self)
        if self.kind not in UPDATE_RULES:
            raise ValueError(f"OptimizerConfig.kind must be one of {sorted(UPDATE_RULES)}, got {self.kind!r}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"OptimizerConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not self.eps > 0:
            raise ValueError(f"OptimizerConfig.eps must be > 0, got {self.eps}")


class UpdateRule:
    """z <- update(z, g, lr) for logits (B, L, V)."""

    def __init__(self, config: OptimizerConfig) -> None:
        self.config = config

    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float, step: int) -> torch.Tensor:
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


@register_update_rule("sgd")
class SGD(UpdateRule):
    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float, step: int) -> torch.Tensor:
        return logits - lr * grad


@register_update_rule("adam")
class Adam(UpdateRule):
    """torch.optim.Adam (Kingma & Ba 2015) on the logits, bias-corrected by its own step count."""

    def __init__(self, config: OptimizerConfig) -> None:
        super().__init__(config)
        self.param: torch.Tensor | None = None
        self.optimizer: torch.optim.Adam | None = None

    def step(self, logits: torch.Tensor, grad: torch.Tensor, lr: float, step: int) -> torch.Tensor:
        if step < 1:
            raise ValueError(f"Adam step must be >= 1 (bias correction), got {step}")
        if self.optimizer is None:
            self.param = logits.detach().clone()
            self.optimizer = torch.optim.Adam([self.param], lr=lr, betas=(self.config.beta1, self.config.beta2),
                                              eps=self.config.eps)
        with torch.no_grad():
            self.param.copy_(logits)
        self.param.grad = grad
        self.optimizer.param_groups[0]["lr"] = lr
        self.optimizer.step()
        return self.param.detach().clone()  # the engine keeps its own copy; the state tensor stays private


class UncorrectedAdam(torch.optim.Adam):
    """Adam without bias correction (SODA): z <- z - lr m / (sqrt(v) + eps).

    torch.optim.Adam's update is lr/c1 * m / (sqrt(v)/sqrt(c2) + eps) with c_i = 1 - beta_i^t, so the
    uncorrected one is that update at lr' = lr c1 / sqrt(c2) and eps' = eps / sqrt(c2), set before each step.
    `state.clear()` deletes the moments; the next step starts again from t = 1."""

    def __init__(self, params, *, lr: float, betas: tuple[float, float], eps: float) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps)
        self.uncorrected = [(group["lr"], group["eps"]) for group in self.param_groups]

    @torch.no_grad()
    def step(self, closure=None):
        for group, (lr, eps) in zip(self.param_groups, self.uncorrected, strict=True):
            beta1, beta2 = group["betas"]
            t = 1 + int(next((self.state[p]["step"] for p in group["params"] if self.state[p]), 0))
            c1, c2 = 1 - beta1**t, 1 - beta2**t
            group["lr"], group["eps"] = lr * c1 / c2**0.5, eps / c2**0.5
        return super().step(closure)
