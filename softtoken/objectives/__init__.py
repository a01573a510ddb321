"""Losses over a relaxed prompt, one value per trajectory: target CE, fluency, entropy, token mass."""

from softtoken.objectives.base import (
    OBJECTIVES,
    Objective,
    ObjectiveContext,
    build_objective,
    get_objective_class,
    register_objective,
)
from softtoken.objectives.prompt import AllowedTokens, BannedTokens, Entropy, Fluency
from softtoken.objectives.target import TOKEN_LOSSES, FreeRunningTargetCE, RelaxedFeedback, TargetCE, target_loss

__all__ = [
    "OBJECTIVES",
    "TOKEN_LOSSES",
    "AllowedTokens",
    "BannedTokens",
    "Entropy",
    "Fluency",
    "FreeRunningTargetCE",
    "Objective",
    "ObjectiveContext",
    "RelaxedFeedback",
    "TargetCE",
    "build_objective",
    "get_objective_class",
    "register_objective",
    "target_loss",
]
