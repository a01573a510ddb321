"""One stage of the gradient sequence optimiser: B trajectories of prompt logits descended together.

The prompt is a logit matrix per trajectory, Z (B, L, V) over the prompt vocabulary. Each step
(proto-gradient-optimizer.md §3, batched in torch):

1. Evaluate soft, hard, temperature and every objective weight at progress step / steps.
2. Relax Z once (engine.relaxation.blend); each objective gives a loss (B,) and, by one backward,
   its gradient (B, L, V). A non-finite gradient stops the run naming the objective and step.
3. The weighted loss sum_k w_k loss_k belongs to the current (pre-update) Z: save_best pairs them.
4. Align norms -> weight -> merge -> zero fixed rows -> normalise -> update rule at the effective lr.

After the last update Z is evaluated once more (no gradient), so the final logits are scored too;
save_best then returns, per trajectory, the lowest-loss logits seen, and the history ends with a
snapshot of exactly what is returned. Tracking keeps token ids and losses, never L x V logits.

    result = run_stage(lm, StageConfig(steps=100, prompt_length=6), [TargetCE()],
                       ObjectiveContext(target_ids=tuple(lm.encode(" Paris."))))
    result.prompt_ids, result.loss
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol

import torch

from softtoken.engine.config import StageConfig
from softtoken.engine.gradients import align_norms, get_merger, normalize_gradient
from softtoken.engine.relaxation import blend, mask_forbidden
from softtoken.engine.variables import StageVariables
from softtoken.lm.softlm import SoftLM
from softtoken.metrics.tracking import Tracker
from softtoken.objectives.base import Objective, ObjectiveContext
from softtoken.relax import gumbel_noise, initial_logits

logger = logging.getLogger(__name__)


class NonFiniteGradientError(FloatingPointError):
    """An objective produced a NaN/inf loss or gradient; the stage cannot continue."""


@dataclass(frozen=True)
class PromptMasks:
    """Where the prompt is not free: frozen rows and tokens no row may take."""

    fixed: torch.Tensor  # (L,) bool, rows that never change and feed their argmax token
    forbidden: torch.Tensor | None  # (V,) bool, hard token masks of the objectives, or None


@dataclass(frozen=True)
class StepState:
    """The scheduled scalars of one step."""

    soft: float
    hard: float
    temperature: float
    lr: float
    weights: tuple[float, ...]  # one per objective, in objective order


@dataclass(kw_only=True)
class Snapshot:
    """What a tracked step saw: the decoded prompt of the logits the losses were computed on."""

    step: int
    final: bool  # True for the snapshot of the returned logits, taken after the save_best restore
    prompt_ids: list[list[int]]  # (B, L) model token ids
    loss: list[float]  # (B,) weighted total
    objective_losses: dict[str, list[float]]  # label -> (B,) unweighted
    discrete_loss: list[float] | None  # (B,) weighted loss of the argmax prompt, with score_discrete
    state: dict[str, Any]  # soft, hard, temperature, lr, weights


@dataclass(kw_only=True)
class StageResult:
    """Returned logits with their paired losses, and the tracked history."""

    logits: torch.Tensor = field(repr=False)  # (B, L, V) float32, what the next stage continues from
    prompt_ids: list[list[int]]  # (B, L) decoded model token ids
    loss: list[float]  # (B,) weighted loss of exactly these logits
    objective_losses: dict[str, list[float]]  # label -> (B,) unweighted losses of these logits
    updates: list[int]  # (B,) how many updates the returned logits had received (0 .. steps)
    history: list[Snapshot]
    steps_run: int = 0  # steps taken (fewer than config.steps when a monitor stopped the stage)
    stopped_early: bool = False  # a monitor stopped the stage
    temperature: list[list[float]] = field(default_factory=list)  # (B, n) final effective temperatures
    forward_tokens: int = 0  # positions through the model in this stage, every pass (SoftLM.tokens)
    backward_tokens: int = 0  # positions of the passes that were backpropagated

    def to_dict(self) -> dict[str, Any]:
        """Plain values only; the logits stay out (and are not copied on the way)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("logits", "history")}
        return {**copy.deepcopy(data), "history": [asdict(snapshot) for snapshot in self.history]}


@dataclass(frozen=True)
class StepView:
    """What a monitor sees each step: the losses of `logits` before this step's update."""

    step: int
    logits: torch.Tensor  # (B, L, V) the logits the losses belong to
    loss: torch.Tensor  # (B,) weighted total, mean over samples
    objective_losses: dict[str, torch.Tensor]  # label -> (B,) unweighted, mean over samples
    temperature: torch.Tensor  # (B, n) effective temperature, n = 1 or L
    sample_index: torch.Tensor  # (B*S, L) prompt-vocabulary index of each sample's token (its argmax)
    predictions: dict[str, torch.Tensor]  # label -> (B*S, T) the model's argmax at each target position


class Monitor(Protocol):
    """Called every step; returning True stops the stage before the update (e.g. on an exact match)."""

    def __call__(self, view: StepView) -> bool: ...


@dataclass
class Evaluation:
    losses: torch.Tensor  # (K, B) unweighted, mean over samples
    grads: torch.Tensor | None  # (K, B, L, V)
    theta_grads: torch.Tensor | None  # (K, B, n, 1)
    aux_grads: list[list[torch.Tensor]]  # per objective, one gradient per objective parameter
    sample_index: torch.Tensor  # (B*S, L)
    predictions: dict[str, torch.Tensor]


def run_stage(
    lm: SoftLM,
    config: StageConfig,
    objectives: Sequence[Objective],
    context: ObjectiveContext | None = None,
    *,
    initial_logits: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    tracker: Tracker | None = None,
    monitor: Monitor | None = None,
) -> StageResult:
    """Run one stage; initial_logits (L, V) or (B, L, V) continue a previous stage."""
    context = context or ObjectiveContext()
    _check_objectives(lm, config, objectives, context)
    tokens_at_start = lm.tokens.snapshot()
    generator = generator or torch.Generator(device=lm.device).manual_seed(config.seed)
    logits = build_initial_logits(lm, config, initial_logits, generator)  # (B, L, V)
    masks = prompt_masks(lm, config, objectives, logits)
    variables = StageVariables(config, logits, objectives, generator)
    best, recorder = _Best(logits), _Recorder(lm, variables, objectives, context, masks, generator, tracker)
    step, stopped, current = 0, False, None
    while step < config.steps and not stopped:
        step += 1
        state = step_state(config, objectives, step)
        noise = _step_noise(lm, config, variables.logits, generator)
        current = evaluate(lm, variables, objectives, context, state, masks, step=step, noise=noise,
                           generator=generator)
        total = _weighted(current.losses, state)  # (B,)
        best.offer(variables.logits, total, current.losses, updates=step - 1)
        if step % config.track_every == 0 or step == config.steps:
            recorder.record(step, variables.logits, total, current.losses, state)
        stopped = monitor is not None and monitor(_view(step, variables, objectives, total, current, state))
        if not stopped:
            direction = combine_gradients(current.grads, state, config, masks.fixed)  # (B, L, V)
            weights = torch.tensor(state.weights, dtype=direction.dtype, device=direction.device)
            variables.update(direction, _weighted_sum(current.theta_grads, weights),
                             _weighted_aux(current.aux_grads, weights), state.lr, step)
    state = step_state(config, objectives, step)
    if stopped:
        best.offer(variables.logits, total, current.losses, updates=step - 1, always=not config.save_best)
    else:
        with torch.no_grad():
            final = evaluate(lm, variables, objectives, context, state, masks, step=step, noise=None,
                             generator=generator, need_grad=False)
        best.offer(variables.logits, _weighted(final.losses, state), final.losses, updates=step,
                   always=not config.save_best)
    snapshot = recorder.record(step, best.logits, best.loss, best.losses, state, final=True)
    return StageResult(logits=best.logits, prompt_ids=snapshot.prompt_ids, loss=snapshot.loss,
                       objective_losses=snapshot.objective_losses, updates=best.updates.tolist(),
                       history=recorder.history, steps_run=step, stopped_early=stopped,
                       temperature=variables.temperature_table(state.temperature).tolist(),
                       forward_tokens=lm.tokens.forward - tokens_at_start[0],
                       backward_tokens=lm.tokens.backward - tokens_at_start[1])


def step_state(config: StageConfig, objectives: Sequence[Objective], step: int) -> StepState:
    """Scheduled scalars at `step` (1-based; progress = step / steps)."""
    total = config.steps
    soft, hard = config.soft.value(step, total), config.hard.value(step, total)
    temperature = config.temperature.value(step, total)
    scale = max((1.0 - soft) + soft * temperature, config.min_lr_scale) if config.scale_lr_by_temperature else 1.0
    schedules = {schedule.label: schedule.ramp for schedule in config.weight_schedules}
    weights = tuple(
        schedules[o.label].value(step, total) if o.label in schedules else o.weight for o in objectives
    )
    return StepState(soft=soft, hard=hard, temperature=temperature, lr=config.lr * scale, weights=weights)


def evaluate(
    lm: SoftLM,
    variables: StageVariables,
    objectives: Sequence[Objective],
    context: ObjectiveContext,
    state: StepState,
    masks: PromptMasks,
    *,
    step: int,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    need_grad: bool = True,
) -> Evaluation:
    """Unweighted losses (K, B), mean over each trajectory's samples, and their gradients if need_grad."""
    config, batch = variables.config, variables.logits.shape[0]
    leaf = variables.logits.detach().requires_grad_(need_grad)
    theta = None if variables.theta is None else variables.theta.detach().requires_grad_(need_grad)
    samples = leaf.repeat_interleave(config.samples, 0) if config.samples > 1 else leaf  # (B*S, L, V)
    tau = variables.temperature(theta, state.temperature)
    if isinstance(tau, torch.Tensor) and config.samples > 1:
        tau = tau.repeat_interleave(config.samples, 0)  # (B*S, n, 1)
    probs = blend(samples, temperature=tau, soft=state.soft, hard=state.hard, fixed=masks.fixed,
                  forbidden=masks.forbidden, noise=noise, noise_scale=config.gumbel_scale,
                  hard_method=config.hard_method, generator=generator)  # (B*S, L, V)
    wrt = [leaf] + ([theta] if theta is not None else []) + variables.aux
    result = Evaluation(losses=None, grads=None, theta_grads=None, aux_grads=[],
                        sample_index=probs.detach().argmax(-1), predictions={})
    losses, grads, theta_grads = [], [], []
    for k, objective in enumerate(objectives):
        with lm.compute(config.compute_dtype, compiled=config.compile_model):
            per_sample, predictions = objective.loss_and_predictions(lm, probs, context)  # (B*S,)
        loss = per_sample.view(batch, config.samples).mean(1)  # (B,)
        _check_finite(loss, objective, step, "loss")
        losses.append(loss.detach())
        if predictions is not None:
            result.predictions[objective.label] = predictions
        if need_grad:
            parts = _gradients(loss, wrt, retain=k < len(objectives) - 1)
            _check_finite(parts[0], objective, step, "gradient")
            grads.append(parts[0])
            if theta is not None:
                theta_grads.append(parts[1])
            result.aux_grads.append(parts[1 + (theta is not None):])
    result.losses = torch.stack(losses)
    if need_grad:
        result.grads = torch.stack(grads)
        result.theta_grads = torch.stack(theta_grads) if theta_grads else None
    return result


def _gradients(loss: torch.Tensor, wrt: list[torch.Tensor], *, retain: bool) -> list[torch.Tensor]:
    """d sum_b loss_b / d each tensor: each trajectory's own gradient, as trajectories never interact.

    `retain` keeps the shared relaxation graph for the next objective; the last one frees it (and a
    compiled model's backward refuses to run with the graph retained)."""
    if not loss.requires_grad:  # e.g. every position fixed: the loss does not depend on the logits
        return [torch.zeros_like(t) for t in wrt]
    grads = torch.autograd.grad(loss.sum(), wrt, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads, strict=True)]


def _step_noise(lm: SoftLM, config: StageConfig, logits: torch.Tensor, generator: torch.Generator):
    """Fresh Gumbel noise for every sample of every trajectory (B*S, L, V), or None."""
    if config.gumbel_scale == 0:
        return None
    batch, length, vocab = logits.shape
    return gumbel_noise((batch * config.samples, length, vocab), generator=generator, kind=config.gumbel_kind,
                        device=lm.device)


def _view(step: int, variables: StageVariables, objectives: Sequence[Objective], total: torch.Tensor,
          current: Evaluation, state: StepState) -> StepView:
    losses = {objective.label: current.losses[k] for k, objective in enumerate(objectives)}
    return StepView(step=step, logits=variables.logits.detach(), loss=total, objective_losses=losses,
                    temperature=variables.temperature_table(state.temperature),
                    sample_index=current.sample_index, predictions=current.predictions)


def _weighted_sum(grads: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor | None:
    """Temperatures follow the weighted sum of the objectives' gradients, whatever the merger."""
    if grads is None:
        return None
    return (weights.view(-1, *([1] * (grads.ndim - 1))) * grads).sum(0)


def _weighted_aux(aux_grads: list[list[torch.Tensor]], weights: torch.Tensor) -> list[torch.Tensor]:
    if not aux_grads or not aux_grads[0]:
        return []
    return [sum(w * grads[i] for w, grads in zip(weights.tolist(), aux_grads)) for i in range(len(aux_grads[0]))]


def combine_gradients(grads: torch.Tensor, state: StepState, config: StageConfig, fixed: torch.Tensor) -> torch.Tensor:
    """Align -> weight -> merge -> zero fixed rows -> normalise: (K, B, L, V) -> (B, L, V)."""
    aligned = align_norms(grads, config.norm_alignment, config.zero_norm_eps)
    weights = torch.tensor(state.weights, dtype=grads.dtype, device=grads.device)
    merged = get_merger(config.merger).merge(weights[:, None, None, None] * aligned)  # (B, L, V)
    # Before normalising, so frozen rows neither move nor count towards the norm.
    merged = merged.masked_fill(fixed[None, :, None], 0.0)
    return normalize_gradient(merged, config.normalize)


def build_initial_logits(
    lm: SoftLM, config: StageConfig, given: torch.Tensor | None, generator: torch.Generator
) -> torch.Tensor:
    """Start logits (B, L, V): given logits, else initial_text, else zeros / randn; then bias, then Gumbel noise."""
    length = _resolve_length(lm, config, given)
    vocab, batch = lm.prompt_vocab_size, config.trajectories
    if given is not None:
        logits = given.detach().float().to(lm.device).expand(batch, length, vocab).clone()
    elif config.initial_text is not None:
        index = prompt_index(lm, lm.encode(config.initial_text), "StageConfig.initial_text")  # (L,)
        row = torch.nn.functional.one_hot(index, vocab).float() * config.initial_scale  # (L, V)
        logits = row.expand(batch, length, vocab).clone()
    else:
        std = config.init_std if config.init == "randn" else 0.0
        logits = initial_logits((batch, length, vocab), std=std, generator=generator, device=lm.device)
    if config.sequence_bias:
        index = prompt_index(lm, [bias.token_id for bias in config.sequence_bias], "StageConfig.sequence_bias")
        for bias, column in zip(config.sequence_bias, index.tolist(), strict=True):
            logits[:, bias.position, column] += bias.value
    if config.gumbel_init:
        noise = gumbel_noise(tuple(logits.shape), generator=generator, device=lm.device) / config.gumbel_init_divisor
        # Noise makes trajectories diverge; frozen rows must keep their token.
        logits = logits + noise.masked_fill(_fixed_mask(config, length, lm.device)[None, :, None], 0.0)
    return logits


def prompt_index(lm: SoftLM, token_ids: Sequence[int], source: str) -> torch.Tensor:
    """Model token ids -> indices into the prompt vocabulary; ids outside it raise, naming `source`."""
    ids = torch.tensor(list(token_ids), dtype=torch.long, device=lm.device)
    index, inside = lm.to_prompt_index(ids)
    missing = ids[~inside].tolist()
    if missing:
        raise ValueError(f"{source}: token ids {missing} are not in the prompt vocabulary")
    return index


def decode(
    lm: SoftLM, logits: torch.Tensor, mode: str, masks: PromptMasks, generator: torch.Generator
) -> torch.Tensor:
    """Logits (B, L, V) -> model token ids (B, L); fixed rows always decode to their argmax."""
    logits = mask_forbidden(logits, masks.forbidden)
    index = logits.argmax(-1)  # (B, L)
    if mode == "categorical":
        flat = torch.softmax(logits.reshape(-1, logits.shape[-1]), -1)  # (B*L, V)
        sampled = torch.multinomial(flat, 1, generator=generator).reshape(index.shape)  # (B, L)
        index = torch.where(masks.fixed[None, :], index, sampled)
    return lm.to_model_ids(index)


class _Best:
    """Per-trajectory lowest weighted loss with the exact logits and losses it was computed on."""

    def __init__(self, logits: torch.Tensor) -> None:
        batch = logits.shape[0]
        self.logits = logits.clone()  # (B, L, V)
        self.loss = torch.full((batch,), float("inf"), device=logits.device)  # (B,)
        self.losses: torch.Tensor | None = None  # (K, B)
        self.updates = torch.zeros(batch, dtype=torch.long)  # (B,)

    def offer(self, logits: torch.Tensor, loss: torch.Tensor, losses: torch.Tensor, *, updates: int,
              always: bool = False) -> None:
        better = torch.ones_like(loss, dtype=torch.bool) if always else loss < self.loss  # (B,)
        self.logits[better] = logits[better].detach()
        self.loss = torch.where(better, loss, self.loss)
        self.losses = losses.clone() if self.losses is None else torch.where(better[None], losses, self.losses)
        self.updates[better.cpu()] = updates


def prompt_masks(lm: SoftLM, config: StageConfig, objectives: Sequence[Objective], logits: torch.Tensor) -> PromptMasks:
    """Fixed rows from the config, forbidden tokens from the objectives; a fixed row may not hold one."""
    fixed = _fixed_mask(config, logits.shape[1], lm.device)  # (L,)
    masks = [m for m in (o.forbidden(lm) for o in objectives) if m is not None]
    if not masks:
        return PromptMasks(fixed=fixed, forbidden=None)
    forbidden = torch.stack(masks).any(0)  # (V,)
    if bool(forbidden.all()):
        raise ValueError("the objectives' token masks forbid every token of the prompt vocabulary")
    held = logits[:, fixed].argmax(-1)  # (B, F)
    if bool(forbidden[held].any()):
        raise ValueError(f"fixed positions {list(config.fixed_positions)} hold a token an objective forbids")
    return PromptMasks(fixed=fixed, forbidden=forbidden)


def _weighted(losses: torch.Tensor, state: StepState) -> torch.Tensor:
    weights = torch.tensor(state.weights, dtype=losses.dtype, device=losses.device)
    return (weights[:, None] * losses).sum(0)  # (B,)


def _check_finite(values: torch.Tensor, objective: Objective, step: int, what: str) -> None:
    finite = torch.isfinite(values).reshape(values.shape[0], -1).all(-1)  # (B,)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten().tolist()
        raise NonFiniteGradientError(
            f"non-finite {what} from objective {objective.label!r} at step {step} (trajectories {bad}); "
            "lower lr or check the objective"
        )


def _fixed_mask(config: StageConfig, length: int, device: torch.device | str) -> torch.Tensor:
    mask = torch.zeros(length, dtype=torch.bool, device=device)  # (L,)
    mask[list(config.fixed_positions)] = True
    return mask


def _resolve_length(lm: SoftLM, config: StageConfig, given: torch.Tensor | None) -> int:
    if given is not None:
        if given.ndim not in (2, 3) or given.shape[-1] != lm.prompt_vocab_size:
            shape = tuple(given.shape)
            raise ValueError(f"initial_logits must be (L, {lm.prompt_vocab_size}) or (B, L, V), got {shape}")
        if given.ndim == 3 and given.shape[0] != config.trajectories:
            raise ValueError(f"initial_logits has {given.shape[0]} trajectories, config has {config.trajectories}")
        length = int(given.shape[-2])
    elif config.initial_text is not None:
        length = len(lm.encode(config.initial_text))
    elif config.prompt_length is not None:
        length = config.prompt_length
    else:
        raise ValueError("StageConfig: set prompt_length, initial_text or pass initial_logits")
    if config.prompt_length is not None and config.prompt_length != length:
        raise ValueError(f"StageConfig.prompt_length={config.prompt_length} but the initial prompt has {length} tokens")
    positions = list(config.fixed_positions) + [bias.position for bias in config.sequence_bias]
    used = [p for p in positions if p >= length]
    if used:
        raise ValueError(f"StageConfig: positions {sorted(used)} are outside the prompt of {length} tokens")
    return length


def _check_objectives(
    lm: SoftLM, config: StageConfig, objectives: Sequence[Objective], context: ObjectiveContext
) -> None:
    if not objectives:
        raise ValueError("run_stage needs at least one objective")
    labels = [objective.label for objective in objectives]
    if len(set(labels)) != len(labels):
        raise ValueError(f"objective labels must be unique (they key weights and metrics), got {labels}")
    for schedule in config.weight_schedules:
        if schedule.label not in labels:
            logger.warning("weight schedule for %r ignored: no objective has that label (labels: %s)",
                           schedule.label, labels)
    for objective in objectives:
        objective.check(lm, context)


class _Recorder:
    """Builds the history and feeds the tracker; optionally re-scores the argmax (discrete) prompt."""

    def __init__(self, lm: SoftLM, variables: StageVariables, objectives: Sequence[Objective],
                 context: ObjectiveContext, masks: PromptMasks, generator: torch.Generator,
                 tracker: Tracker | None) -> None:
        self.lm, self.variables, self.config = lm, variables, variables.config
        self.objectives, self.context = objectives, context
        self.masks, self.generator, self.tracker = masks, generator, tracker
        self.history: list[Snapshot] = []

    def record(self, step: int, logits: torch.Tensor, total: torch.Tensor, losses: torch.Tensor, state: StepState,
               *, final: bool = False) -> Snapshot:
        ids = decode(self.lm, logits, self.config.decode, self.masks, self.generator)  # (B, L)
        discrete = self._discrete_loss(logits, state, step) if self.config.score_discrete else None
        snapshot = Snapshot(
            step=step, final=final, prompt_ids=ids.tolist(), loss=total.tolist(),
            objective_losses={o.label: losses[k].tolist() for k, o in enumerate(self.objectives)},
            discrete_loss=None if discrete is None else discrete.tolist(),
            state={**asdict(state), "weights": list(state.weights)},  # lists, so to_dict is JSON as is
        )
        self.history.append(snapshot)
        if not final:
            self._log(step, total, losses, discrete, state)
        return snapshot

    @torch.no_grad()
    def _discrete_loss(self, logits: torch.Tensor, state: StepState, step: int) -> torch.Tensor:
        """Weighted loss of the argmax prompt itself: soft = hard = 0 feeds exactly one-hot rows."""
        one_hot = replace(state, soft=0.0, hard=0.0)
        probe = self.variables.with_logits(logits)
        scored = evaluate(self.lm, probe, self.objectives, self.context, one_hot, self.masks, step=step,
                          need_grad=False)
        return _weighted(scored.losses, state)  # (B,)

    def _log(self, step: int, total: torch.Tensor, losses: torch.Tensor, discrete: torch.Tensor | None,
             state: StepState) -> None:
        metrics = {"loss/total": total.mean().item(), "loss/total_min": total.min().item(),
                   "relax/temperature": state.temperature, "relax/soft": state.soft, "relax/hard": state.hard,
                   "optim/lr": state.lr}
        if discrete is not None:
            metrics["loss/discrete_total_min"] = discrete.min().item()
        for k, objective in enumerate(self.objectives):
            metrics[f"objective/{objective.label}/loss"] = losses[k].mean().item()
            metrics[f"objective/{objective.label}/weight"] = state.weights[k]
        logger.debug("step %d: loss %.4f (min %.4f)", step, metrics["loss/total"], metrics["loss/total_min"])
        if self.tracker is not None:
            self.tracker.log(step, metrics)
