"""Temperature parametrisations for Gumbel-softmax: fixed, one learnable, or one per position.

Learnable temperatures follow the DLMI reference: tau = eps + tau0 * (1 + tanh(theta)), so tau lies
in (eps, 2 tau0). theta starts U[0,1) as in the reference (tau0 <= tau < 1.762 tau0) or at 0
(exactly tau0).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

ThetaInit = Literal["uniform", "zero"]
THETA_INITS: tuple[str, ...] = ("uniform", "zero")


class Temperature(nn.Module):
    """Effective temperature per position, shape (n,), with n = 1 or the number of positions."""

    def __init__(
        self,
        tau0: float,
        *,
        learnable: bool = False,
        num: int = 1,
        theta_init: ThetaInit = "uniform",
        eps: float = 1e-10,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if tau0 <= 0:
            raise ValueError(f"temperature must be > 0, got {tau0}")
        if num < 1:
            raise ValueError(f"number of temperatures must be >= 1, got {num}")
        if theta_init not in THETA_INITS:
            raise ValueError(f"theta_init must be one of {THETA_INITS}, got {theta_init!r}")
        self.tau0, self.eps, self.learnable = float(tau0), float(eps), learnable
        if learnable:
            theta = (
                torch.rand(num, generator=generator, device=device)
                if theta_init == "uniform"
                else torch.zeros(num, device=device)
            )
            self.theta = nn.Parameter(theta)
        else:
            self.register_buffer("fixed", torch.full((num,), float(tau0), device=device))

    def forward(self) -> torch.Tensor:
        if self.learnable:
            return self.eps + self.tau0 * (1.0 + torch.tanh(self.theta))  # (n,)
        return self.fixed  # (n,)


class HiddenStateTemperature(nn.Module):
    """Temperature conditioned on a hidden state: tau = eps + tau0 (1 + tanh(softplus(W h))).

    Faithful to the reference's BPTT option; softplus >= 0 means tau can only rise above tau0.
    """

    def __init__(self, tau0: float, hidden_size: int, *, num: int = 1, eps: float = 1e-10) -> None:
        super().__init__()
        if tau0 <= 0:
            raise ValueError(f"temperature must be > 0, got {tau0}")
        self.tau0, self.eps = float(tau0), float(eps)
        self.proj = nn.Linear(hidden_size, num, bias=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, D) -> tau (B, n)."""
        return self.eps + self.tau0 * (1.0 + torch.tanh(nn.functional.softplus(self.proj(hidden))))
