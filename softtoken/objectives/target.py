"""Target cross-entropy: make the frozen model emit the target after the prompt.

`target` is teacher-forced (one forward pass on [prompt ; target[:-1]]); `target_free` rolls the
model out from the prompt, feeding back its own greedy token (hard) or its relaxed output
distribution (BPTT), and scores each step against the target.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from softtoken.lm.frame import Frame, FramedTarget
from softtoken.lm.softlm import Feedback, SoftLM
from softtoken.objectives.base import Objective, ObjectiveContext, register_objective
from softtoken.objectives.prompt import prompt_nll
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


def cross_entropy_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """-log p(y_t) per position: logits (B, T, V_out), target (T,) -> (B, T)."""
    batch, steps, vocab = logits.shape
    # Rows of (B*T, V): a (B, V, T) view would send the log-softmax down its slow strided path.
    token_ce = F.cross_entropy(logits.reshape(-1, vocab), target.expand(batch, -1).reshape(-1), reduction="none")
    return token_ce.view(batch, steps)


def margin_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """max_v log p(v) - log p(y_t) per position (B, T): >= 0, and 0 exactly where y_t is the argmax (SODA)."""
    log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V_out)
    chosen = log_probs.gather(-1, target.view(1, -1, 1).expand(log_probs.shape[0], -1, 1)).squeeze(-1)  # (B, T)
    return log_probs.max(-1).values - chosen


TOKEN_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "crossentropy": cross_entropy_loss,
    "margin": margin_loss,
}
REDUCTIONS: tuple[str, ...] = ("mean", "mellowmax")


def mellowmax(values: torch.Tensor, alpha: float) -> torch.Tensor:
    """log(mean_t exp(alpha x_t)) / alpha over the last axis: a soft maximum (alpha -> 0 gives the mean)."""
    count = torch.tensor(float(values.shape[-1]), device=values.device)
    return (torch.logsumexp(alpha * values, dim=-1) - count.log()) / alpha


def target_loss(logits: torch.Tensor, target: torch.Tensor, *, token_loss: str = "crossentropy",
                reduction: str = "mean", alpha: float = 1.0) -> torch.Tensor:
    """The one target loss of every method: logits (B, T, V_out), target (T,) -> loss per prompt (B,).

    `reduction` mellowmax weights the worst positions up (nanoGCG's `use_mellowmax` applies it to the
    negated target logits; here it reduces any per-token loss), so one stubborn token is not averaged away."""
    per_token = TOKEN_LOSSES[token_loss](logits, target)  # (B, T)
    return per_token.mean(-1) if reduction == "mean" else mellowmax(per_token, alpha)


@dataclass(frozen=True, kw_only=True)
class _NeedsTarget(Objective):
    """A target objective: which per-token loss, and how it is reduced over the target."""

    token_loss: str = "crossentropy"  # crossentropy or margin (max_v log p(v) - log p(y_t), SODA / DLMI repo GCG)
    reduction: str = "mean"  # mean over target positions, or mellowmax (a soft maximum)
    mellowmax_alpha: float = 1.0  # > 0; nanoGCG's default
    target_ids: tuple[int, ...] = ()  # this objective's own target (a universal prompt's); (): the context's
    frame: Frame | None = None  # this objective's own frame around the prompt; None: the model's

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.token_loss not in TOKEN_LOSSES:
            raise ValueError(f"{type(self).__name__}.token_loss must be one of {sorted(TOKEN_LOSSES)}, "
                             f"got {self.token_loss!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"{type(self).__name__}.reduction must be one of {REDUCTIONS}, got {self.reduction!r}")
        if not 0 < self.mellowmax_alpha < float("inf"):
            raise ValueError(f"{type(self).__name__}.mellowmax_alpha must be finite and > 0, "
                             f"got {self.mellowmax_alpha}")

    def describe(self) -> str:
        reduction = self.reduction if self.reduction == "mean" else f"mellowmax({self.mellowmax_alpha:g})"
        return f"{self.token_loss}/{reduction}" + ("" if isinstance(self, TargetCE) else " free-running")

    def target(self, context: ObjectiveContext) -> tuple[int, ...]:
        return self.target_ids or context.target_ids

    def in_frame(self, lm: SoftLM) -> SoftLM:
        """The model as this objective reads it: in its own frame, if it has one."""
        return lm if self.frame is None else lm.framed(self.frame)

    def reduce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss per prompt (B,) of target logits (B, T, V_out)."""
        return target_loss(logits, target, token_loss=self.token_loss, reduction=self.reduction,
                           alpha=self.mellowmax_alpha)

    def loss(self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext) -> torch.Tensor:
        return self.loss_and_predictions(lm, probs, context)[0]

    def loss_and_predictions(
        self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._score(lm, lm.embed_probs(probs), context)

    def hard_loss_and_predictions(
        self, lm: SoftLM, index: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._score(lm, lm.embed_ids(lm.to_model_ids(index)), context)

    def _score(self, lm: SoftLM, embeds: torch.Tensor, context: ObjectiveContext) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (B,) and argmax predictions (B, T) of prompt embeddings (B, L, D): relaxed and hard prompts
        differ only in how they are embedded."""
        raise NotImplementedError

    def check(self, lm: SoftLM, context: ObjectiveContext) -> None:
        if not self.target(context):
            raise ValueError(f"objective {self.label!r} needs ObjectiveContext.target_ids, got none")
        bad = [t for t in self.target(context) if not 0 <= t < lm.output_vocab_size]
        if bad:
            raise ValueError(f"objective {self.label!r}: target ids outside [0, {lm.output_vocab_size}): {bad[:5]}")


@register_objective("target")
@dataclass(frozen=True, kw_only=True)
class TargetCE(_NeedsTarget):
    """Teacher-forced target cross-entropy."""

    label: str = "target"

    def _score(self, lm: SoftLM, embeds: torch.Tensor, context: ObjectiveContext) -> tuple[torch.Tensor, torch.Tensor]:
        target = torch.tensor(self.target(context), device=lm.device)  # (T,)
        logits = self.in_frame(lm).teacher_forced_logits(embeds, target)  # (B, T, V_out)
        return self.reduce(logits, target), logits.detach().argmax(-1)

    def loss_predictions_and_fluency(
        self, lm: SoftLM, probs: torch.Tensor, context: ObjectiveContext
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`loss_and_predictions` of prompts probs (B, L, V), and from the same pass their fluency (B,)
        (`prompt_nll`): the prompt's own likelihood costs only the LM head at L-1 more positions."""
        target = torch.tensor(self.target(context), device=lm.device)  # (T,)
        logits, prompt_logits = self.in_frame(lm).teacher_forced_and_prompt_logits(lm.embed_probs(probs), target)
        return self.reduce(logits, target), logits.detach().argmax(-1), prompt_nll(lm, probs, prompt_logits)


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

    def _score(self, lm: SoftLM, embeds: torch.Tensor, context: ObjectiveContext) -> tuple[torch.Tensor, torch.Tensor]:
        target = torch.tensor(self.target(context), device=lm.device)  # (T,)
        lm, module = self.in_frame(lm), self.feedback_module
        if module is not None:
            feed, need_hidden = module, module.needs_hidden
        else:
            feed, need_hidden = (None if self.feedback == "greedy" else self._relaxed_feed(lm)), False
        logits = lm.rollout_logits(embeds, int(target.numel()), feed, need_hidden=need_hidden)
        return self.reduce(logits, target), logits.detach().argmax(-1)

    def parameters(self) -> list[torch.Tensor]:
        return [] if self.feedback_module is None else list(self.feedback_module.parameters())

    def _relaxed_feed(self, lm: SoftLM) -> Feedback:
        def feed(logits: torch.Tensor, step: int, hidden: torch.Tensor | None) -> torch.Tensor:
            return lm.relaxed_feedback_embeds(relax(logits, self.feedback_temperature))  # (B, 1, D)

        return feed


def per_target(objective: _NeedsTarget, targets: tuple[FramedTarget, ...]) -> tuple[_NeedsTarget, ...]:
    """One copy of `objective` per target of a universal prompt, labelled `label/i`, each with its target
    and frame: the engine merges them (weighted sum, PCGrad, MGDA) like any objectives."""
    return tuple(replace(objective, label=f"{objective.label}/{index}", target_ids=target.target_ids,
                         frame=target.frame) for index, target in enumerate(targets))


@dataclass(frozen=True, kw_only=True)
class MeanTarget(_NeedsTarget):
    """The mean loss of several target objectives on one prompt (a universal prompt's loss); predictions are
    concatenated in order, so they equal the concatenated targets exactly when every target is hit."""

    label: str = "target"
    parts: tuple[_NeedsTarget, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.parts:
            raise ValueError("MeanTarget needs at least one target objective in parts")

    def describe(self) -> str:
        return f"{self.parts[0].describe()} (mean of {len(self.parts)} targets)"

    def check(self, lm: SoftLM, context: ObjectiveContext) -> None:
        for part in self.parts:
            part.check(lm, context)

    def _score(self, lm: SoftLM, embeds: torch.Tensor, context: ObjectiveContext) -> tuple[torch.Tensor, torch.Tensor]:
        scored = [part._score(lm, embeds, context) for part in self.parts]
        losses = torch.stack([loss for loss, _ in scored]).mean(0)  # (B,)
        return losses, torch.cat([predictions for _, predictions in scored], dim=-1)  # (B, sum T)
