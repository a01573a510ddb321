"""What every objective shares: the context it reads, the base class and the registry.

An objective maps a relaxed prompt probs (B, L, V) over the prompt vocabulary to one loss per
trajectory (B,). It never applies its own weight and never relaxes: the engine does both, once, for
every objective, so all objectives see the same prompt.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch

from softtoken.configcheck import check_types
from softtoken.lm.softlm import SoftLM


@dataclass(frozen=True, kw_only=True)
class ObjectiveContext:
    """Problem data objectives may read; objectives that need a field check it in `check`."""

    target_ids: tuple[int, ...] = ()  # model token ids the prompt should make the model emit

    def target_tensor(self, device: torch.device | str) -> torch.Tensor:
        return torch.tensor(self.target_ids, dtype=torch.long, device=device)  # (T,)


@dataclass(frozen=True, kw_only=True)
class Objective:
    """A loss per trajectory with a label (the key for weight schedules and metrics) and a weight."""

    label: str = "objective"  # subclasses default it to their registry name
    weight: float = 1.0  # static weight, >= 0; a weight schedule with this label overrides it

    def __post_init__(self) -> None:
        check_types(self)
        if not self.label:
            raise ValueError(f"{type(self).__name__}.label must be non-empty, got {self.label!r}")
        if not (math.isfinite(self.weight) and self.weight >= 0):
            raise ValueError(f"{type(self).__name__}.weight must be finite and >= 0, got {self.weight}")

    def check(self, lm: SoftLM, context: ObjectiveContext) -> None:
        """Raise before any forward pass if this objective cannot run on lm and context."""

    def describe(self) -> str:
        """What the loss is, for plots and reports (objectives on one axis must be the same kind)."""
        return self.label

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        """probs (B, L, V) -> loss (B,), differentiable with respect to probs."""
        raise NotImplementedError

    def loss_and_predictions(
        self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss (B,) and, for target objectives, the model's argmax at each target position (B, T)."""
        return self.loss(lm, probs, context), None

    def hard_loss_and_predictions(
        self, lm: SoftLM, index: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The same loss of discrete prompts, index (B, L) into the prompt vocabulary: what a discrete
        search scores. The default feeds one-hot rows through `loss`; target objectives embed the ids
        directly (a one-hot mixture over ~50k rows costs more than the model pass)."""
        one_hot = torch.nn.functional.one_hot(index, lm.prompt_vocab_size).float()  # (B, L, V)
        return self.loss_and_predictions(lm, one_hot, context)

    def parameters(self) -> list[torch.Tensor]:
        """Learnable tensors the objective owns (e.g. BPTT feedback temperatures), shared by all trajectories."""
        return []

    def forbidden(self, lm: SoftLM) -> torch.Tensor | None:
        """(V,) bool of prompt-vocabulary entries the engine must mask out of the prompt, or None."""
        return None


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(name: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator adding an Objective to OBJECTIVES under `name`."""

    def add(cls: type[Objective]) -> type[Objective]:
        if name in OBJECTIVES:
            raise ValueError(f"objective {name!r} is already registered")
        OBJECTIVES[name] = cls
        return cls

    return add


def get_objective_class(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; available: {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def build_objective(spec: Mapping[str, Any]) -> Objective:
    """An objective from a plain mapping such as {"name": "fluency", "weight": 0.1} (YAML, JSON)."""
    if "name" not in spec:
        raise ValueError(f"objective spec needs a 'name' (one of {sorted(OBJECTIVES)}), got {dict(spec)}")
    options = {key: value for key, value in spec.items() if key != "name"}
    cls = get_objective_class(spec["name"])
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"objective {spec['name']!r}: unknown option(s) {unknown}; valid: {sorted(names)}")
    for key, value in options.items():
        if isinstance(value, list):
            options[key] = tuple(value)
    return cls(**options)
