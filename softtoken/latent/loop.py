"""The guarded optimisation loop shared by SFT and GRPO: lr schedule, clipping, checkpoints, resume,
and automatic rollback when the loss diverges.

Divergence = a non-finite loss or gradient norm, or a loss above `spike_factor` x its running mean
(after a short history). The loop then reloads the last good checkpoint, marks the offending step to
be skipped (its batch is a pure function of the step, so replaying it would diverge again), halves
the learning rate, and continues. The reference left this to a human.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from softtoken.engine.schedules import Ramp
from softtoken.latent.checkpoint import checkpoint_dirs, load_checkpoint, prune_checkpoints, save_checkpoint, step_dir
from softtoken.metrics.tracking import Tracker

logger = logging.getLogger(__name__)

_HISTORY = 10  # good steps before spike detection starts
_EMA = 0.9
# lr factor reached at the last step by each `lr_schedule` (a registered engine schedule starting at 1).
_DECAY_END = {"constant": 1.0, "cosine": 0.0}


@dataclass
class LoopState:
    step: int = 0
    rollbacks: int = 0
    lr_scale: float = 1.0
    skipped: list[int] = field(default_factory=list)
    loss_ema: float | None = None
    good_steps: int = 0
    log_bytes: int | None = None  # size of metrics.jsonl when saved; None in checkpoints older than this field


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    steps: int  # >= 1
    lr: float  # > 0
    warmup_steps: int = 0
    lr_schedule: str = "constant"  # a key of _DECAY_END
    max_grad_norm: float = 1.0
    spike_factor: float | None = 5.0  # None = only non-finite values count as divergence
    max_rollbacks: int = 5
    save_every: int = 100
    keep: int | None = None  # checkpoints kept; None = all
    seed: int = 0  # with the step, keys the global generator that dropout draws from

    def __post_init__(self) -> None:
        if self.lr_schedule not in _DECAY_END:
            raise ValueError(f"lr_schedule must be one of {sorted(_DECAY_END)}, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


def lr_factor(step: int, config: LoopConfig) -> float:
    """Linear warmup (step 0 already at 1/warmup), then the engine's `lr_schedule` from 1 over the rest."""
    warmup = config.warmup_steps
    if step < warmup:
        return Ramp(start=0.0, end=1.0).value(step + 1, warmup)
    decay = Ramp(start=1.0, end=_DECAY_END[config.lr_schedule], schedule=config.lr_schedule)
    return decay.value(step - warmup, max(1, config.steps - warmup))


def tracker_metrics(record: dict) -> dict[str, float]:
    """A step record of metrics.jsonl as slash-keyed tracker metrics (inversion's names where they exist)."""
    renamed = {"loss": "loss/total", "lr": "optim/lr", "grad_norm": "optim/grad_norm"}
    return {renamed.get(key, key if "/" in key else f"train/{key}"): value
            for key, value in record.items() if key != "step"}


class GuardedLoop:
    """`step_fn(step)` runs forward + backward for one optimiser step and returns (loss, metrics).

    Every optimiser step's record goes to metrics.jsonl and, when given, to `tracker` (which the caller
    closes). Rollback records and out-of-loop `log` calls go to the file only."""

    def __init__(self, run_dir: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 config: LoopConfig, tracker: Tracker | None = None) -> None:
        self.root, self.model, self.optimizer, self.config = Path(run_dir) / "checkpoints", model, optimizer, config
        self.tracker = tracker
        self.state = LoopState()
        self.metrics_path = Path(run_dir) / "metrics.jsonl"

    def start(self) -> None:
        """Resume from the newest checkpoint, or save step 0 so a rollback always has a target."""
        existing = checkpoint_dirs(self.root)
        if existing:
            self.state = LoopState(**load_checkpoint(existing[-1], self.model, self.optimizer))
            self._truncate_log()
            logger.info("resumed from %s", existing[-1])
        else:
            self.save()

    def _log_size(self) -> int:
        return self.metrics_path.stat().st_size if self.metrics_path.is_file() else 0

    def _truncate_log(self) -> None:
        """Drop what a killed run logged after its last checkpoint: the resumed run logs those steps again.

        By size, not by step number: that also drops a half-written last line, a rollback record and
        GRPO's step-0 evaluation, whose step numbers do not say whether they precede the checkpoint.
        """
        size, kept = self._log_size(), self.state.log_bytes
        if kept is None or size == kept:
            return
        if size < kept:
            logger.warning("%s is shorter than at step %d; it has lost records", self.metrics_path, self.state.step)
            return
        with self.metrics_path.open("r+b") as handle:
            handle.truncate(kept)
        logger.info("dropped %d bytes of %s logged after step %d", size - kept, self.metrics_path.name, self.state.step)

    def save(self) -> None:
        self.state.log_bytes = self._log_size()
        save_checkpoint(step_dir(self.root, self.state.step), self.model, self.optimizer, asdict(self.state))
        prune_checkpoints(self.root, self.config.keep)

    def log(self, record: dict) -> None:
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _divergence(self, loss: float, grad_norm: float) -> str | None:
        if not math.isfinite(loss) or not math.isfinite(grad_norm):
            return f"non-finite loss {loss} or grad norm {grad_norm}"
        ema = self.state.loss_ema
        factor = self.config.spike_factor
        if factor is not None and self.state.good_steps >= _HISTORY and ema is not None and loss > factor * abs(ema):
            return f"loss spike {loss:.4g} > {self.config.spike_factor} x running mean {ema:.4g}"
        return None

    def rollback(self, step: int, reason: str) -> None:
        memory = self.state
        if memory.rollbacks >= self.config.max_rollbacks:
            raise RuntimeError(f"training diverged at step {step} ({reason}) after {memory.rollbacks} rollbacks")
        self.optimizer.zero_grad(set_to_none=True)
        target = checkpoint_dirs(self.root)[-1]
        self.state = LoopState(**load_checkpoint(target, self.model, self.optimizer))
        self.state.rollbacks = memory.rollbacks + 1
        self.state.lr_scale = memory.lr_scale * 0.5
        self.state.skipped = sorted(set(memory.skipped) | {step})
        logger.warning("step %d: %s; rolled back to %s, skipping step %d, lr scale %.3g",
                       step, reason, target.name, step, self.state.lr_scale)
        self.log({"step": step, "rollback": reason, "to": target.name})

    def run(self, step_fn: Callable[[int], tuple[float, dict]], after_step: Callable[[int], dict] | None = None) -> None:
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        while self.state.step < self.config.steps:
            step = self.state.step
            if step in self.state.skipped:
                self.state.step += 1
                continue
            lr = self.config.lr * lr_factor(step, self.config) * self.state.lr_scale
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            # Dropout takes no generator, so each step gets the global one reseeded from (seed, step): a
            # resumed run then replays the masks of an uninterrupted one. The multiplier differs from
            # the data draws' 100003, so the two streams differ.
            with torch.random.fork_rng():
                torch.manual_seed(self.config.seed * 1_000_003 + step)
                loss, metrics = step_fn(step)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm))
            reason = self._divergence(loss, grad_norm)
            if reason:
                self.rollback(step, reason)
                continue
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            ema = self.state.loss_ema
            self.state.loss_ema = loss if ema is None else _EMA * ema + (1 - _EMA) * loss
            self.state.good_steps += 1
            self.state.step += 1
            record = {"step": self.state.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, **metrics}
            if after_step is not None:
                record.update(after_step(self.state.step))
            self.log(record)
            if self.tracker is not None:
                self.tracker.log(self.state.step, tracker_metrics(record))
            if self.state.step % self.config.save_every == 0 or self.state.step == self.config.steps:
                self.save()
