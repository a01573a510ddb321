"""Objectives on the prompt itself: fluency, entropy, and banned / allowed token mass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softtoken.lm.softlm import SoftLM
from softtoken.objectives.base import Objective, ObjectiveContext, register_objective

LOG_FLOOR = 1e-12  # keeps p log p differentiable at p = 0 (straight-through rows are exactly one-hot)


@register_objective("fluency")
@dataclass(frozen=True, kw_only=True)
class Fluency(Objective):
    """The prompt's own expected NLL under the model: the logits at i score the distribution at i + 1.

    Loss = mean over i < L-1 of -sum_v p[i+1, v] log q_i(v), with q_i the model's next-token
    distribution after the soft prefix up to i. The first prompt token has no prefix and is not scored.
    """

    label: str = "fluency"

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        if probs.shape[1] < 2:
            raise ValueError(f"objective {self.label!r} needs a prompt of >= 2 tokens, got {probs.shape[1]}")
        logits = lm.sequence_logits(lm.embed_probs(probs))  # (B, L, V_out)
        return prompt_nll(lm, probs, logits[:, :-1])


def prompt_nll(lm: SoftLM, probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Fluency's loss (B,) of prompts probs (B, L, V) from the logits after their first L-1 positions
    (B, L-1, V_out): the mean over i of the expected NLL of row i+1 under the model's prediction at i."""
    log_q = torch.log_softmax(logits, dim=-1)[..., lm.allowed_ids]  # (B, L-1, V) on the prompt vocabulary
    return -(probs[:, 1:].float() * log_q).sum(-1).mean(-1)


@register_objective("entropy")
@dataclass(frozen=True, kw_only=True)
class Entropy(Objective):
    """Mean entropy (nats) of the prompt distributions; a positive weight sharpens them."""

    label: str = "entropy"

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        probs = probs.float()
        return -(probs * probs.clamp_min(LOG_FLOOR).log()).sum(-1).mean(-1)  # (B,)


TOKEN_MODES: tuple[str, ...] = ("penalty", "mask")


@dataclass(frozen=True, kw_only=True)
class _TokenMass(Objective):
    """Mean probability mass on penalised prompt-vocabulary entries, per trajectory.

    mode `mask` also asks the engine to mask those entries out of the prompt (relaxation and decoding);
    the loss then stays exactly 0, a check that the mask holds.
    """

    token_ids: tuple[int, ...] = ()  # model token ids
    mode: str = "penalty"  # penalty: soft loss only; mask: also a hard mask, from the same token set

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.token_ids:
            raise ValueError(f"{type(self).__name__}.token_ids must be non-empty, got ()")
        if self.mode not in TOKEN_MODES:
            raise ValueError(f"{type(self).__name__}.mode must be one of {TOKEN_MODES}, got {self.mode!r}")

    def listed(self, lm: SoftLM) -> torch.Tensor:
        """(V,) bool: which prompt-vocabulary entries are in token_ids."""
        return torch.isin(lm.allowed_ids, torch.tensor(self.token_ids, device=lm.device))

    def penalised(self, lm: SoftLM) -> torch.Tensor:
        """(V,) bool over the prompt vocabulary: the one definition both the penalty and the mask use."""
        raise NotImplementedError

    def forbidden(self, lm: SoftLM) -> torch.Tensor | None:
        return self.penalised(lm) if self.mode == "mask" else None

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        mask = self.penalised(lm).to(probs.dtype)  # (V,)
        return (probs * mask).sum(-1).mean(-1)  # (B,)


@register_objective("banned_tokens")
@dataclass(frozen=True, kw_only=True)
class BannedTokens(_TokenMass):
    label: str = "banned_tokens"

    def penalised(self, lm: SoftLM) -> torch.Tensor:
        return self.listed(lm)


@register_objective("allowed_tokens")
@dataclass(frozen=True, kw_only=True)
class AllowedTokens(_TokenMass):
    label: str = "allowed_tokens"

    def penalised(self, lm: SoftLM) -> torch.Tensor:
        return ~self.listed(lm)
