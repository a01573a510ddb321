"""Target cross-entropy: make the frozen model emit the target after the prompt.

`target` is teacher-forced (one forward pass on [prompt ; target[:-1]]); `target_free` rolls the
model out from the prompt, feeding back its own greedy token (hard) or its relaxed output
distribution (BPTT), and scores each step against the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from softtoken.lm.softlm import Feedback, SoftLM
from softtoken.objectives.base import Objective, ObjectiveContext, register_objective
from softtoken.relax import HiddenStateTemperature, Temperature, gumbel_noise, relax

FEEDBACKS: tuple[str, ...] = ("greedy", "relaxed")


class RelaxedFeedback(torch.nn.Module):
    """BPTT feedback: the model's own output logits go through a Gumbel-softmax of their own.

    The temperature is fixed, learnable (one, or one per output position: `num` = T) or conditioned
    on the last hidden state (the DLMI reference's option; it can only rise above tau0).
    """

    def __init__(self, lm: SoftLM, *, tau0: float, learnable: bool = False, num: int = 1,
                 hidden_conditioning: bool = False, hard: bool = False, hard_method: str = "argmax",
                 gumbel_kind: str = "standard", gumbel_scale: float = 1.0, theta_init: str = "uniform",
                 eps: float = 1e-10, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.lm, self.generator, self.needs_hidden = lm, generator, hidden_conditioning
        self.hard, self.hard_method, self.gumbel_kind, self.gumbel_scale, self.eps = (
            hard, hard_method, gumbel_kind, gumbel_scale, eps)
        if hidden_conditioning:
            self.temperature = HiddenStateTemperature(tau0, lm.hidden_size, num=num, eps=eps).to(lm.device)
        else:
            self.temperature = Temperature(tau0, learnable=learnable, num=num, theta_init=theta_init, eps=eps,
                                           generator=generator, device=lm.device)

    def forward(self, logits: torch.Tensor, step: int, hidden: torch.Tensor | None) -> torch.Tensor:
        """logits (B, V_out) of output position `step` -> next input embeddings (B, 1, D)."""
        tau = self.temperature(hidden.float()) if self.needs_hidden else self.temperature().unsqueeze(0)  # (B|1, n)
        tau = tau[:, min(step, tau.shape[1] - 1)].unsqueeze(-1)  # (B|1, 1)
        noise = gumbel_noise(tuple(logits.shape), generator=self.generator, kind=self.gumbel_kind, eps=self.eps,
                             device=logits.device)
        probs = relax(logits, tau, noise=noise, noise_scale=self.gumbel_scale, hard=self.hard,
                      hard_method=self.hard_method, generator=self.generator)
        return self.lm.relaxed_feedback_embeds(probs)


def per_trajectory_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V_out), target (T,) -> mean token cross-entropy per trajectory (B,)."""
    batch, steps, vocab = logits.shape
    # Rows of (B*T, V): a (B, V, T) view would send the log-softmax down its slow strided path.
    token_ce = F.cross_entropy(logits.reshape(-1, vocab), target.expand(batch, -1).reshape(-1), reduction="none")
    return token_ce.view(batch, steps).mean(-1)


class _NeedsTarget(Objective):
    def check(self, lm: SoftLM, context: ObjectiveContext) -> None:
        if not context.target_ids:
            raise ValueError(f"objective {self.label!r} needs ObjectiveContext.target_ids, got none")
        bad = [t for t in context.target_ids if not 0 <= t < lm.output_vocab_size]
        if bad:
            raise ValueError(f"objective {self.label!r}: target ids outside [0, {lm.output_vocab_size}): {bad[:5]}")


@register_objective("target")
@dataclass(frozen=True, kw_only=True)
class TargetCE(_NeedsTarget):
    """Teacher-forced target cross-entropy."""

    label: str = "target"

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        return self.loss_and_predictions(lm, probs, context)[0]

    def loss_and_predictions(
        self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = context.target_tensor(lm.device)
        logits = lm.teacher_forced_logits(lm.embed_probs(probs), target)  # (B, T, V_out)
        return per_trajectory_cross_entropy(logits, target), logits.detach().argmax(-1)


@register_objective("target_free")
@dataclass(frozen=True, kw_only=True)
class FreeRunningTargetCE(_NeedsTarget):
    """Free-running target cross-entropy; `relaxed` feedback backpropagates through time."""

    label: str = "target_free"
    feedback: str = "greedy"  # greedy: hard argmax tokens fed back; relaxed: softmax(logits / T) fed back
    feedback_temperature: float = 1.0  # T of the relaxed feedback, > 0
    feedback_module: RelaxedFeedback | None = None  # overrides `feedback` (learnable, noisy, hard, conditioned)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.feedback not in FEEDBACKS:
            raise ValueError(f"FreeRunningTargetCE.feedback must be one of {FEEDBACKS}, got {self.feedback!r}")
        if not self.feedback_temperature > 0:
            raise ValueError(f"FreeRunningTargetCE.feedback_temperature must be > 0, got {self.feedback_temperature}")

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        return self.loss_and_predictions(lm, probs, context)[0]

    def loss_and_predictions(
        self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        target = context.target_tensor(lm.device)
        module = self.feedback_module
        if module is not None:
            feed, need_hidden = module, module.needs_hidden
        else:
            feed, need_hidden = (None if self.feedback == "greedy" else self._relaxed_feed(lm)), False
        logits = lm.rollout_logits(lm.embed_probs(probs), int(target.numel()), feed, need_hidden=need_hidden)
        return per_trajectory_cross_entropy(logits, target), logits.detach().argmax(-1)

    def parameters(self) -> list[torch.Tensor]:
        return [] if self.feedback_module is None else list(self.feedback_module.parameters())

    def _relaxed_feed(self, lm: SoftLM) -> Feedback:
        def feed(logits: torch.Tensor, step: int, hidden: torch.Tensor | None) -> torch.Tensor:
            return lm.relaxed_feedback_embeds(relax(logits, self.feedback_temperature))  # (B, 1, D)

        return feed
