"""Discrete scoring for engine-based methods: an engine monitor that drives the run harness.

Every engine-based method (DLMI, programs) watches its stage through `DiscreteMonitor`: each engine
step is a harness step (counted across the stages of a program) with `loss/target` and
`relax/tau_mean` in the history; every `eval_every` steps the argmax prompt of each trajectory is
greedy-decoded by the harness's judge; with `score_hard_samples` every straight-through sample whose
teacher-forced argmax is the target is confirmed too (for a discrete prompt that is the same event as
a greedy exact match, so spotting it costs no extra forward pass). The monitor stops the engine when
the harness says so (budget or exact match; the step cap only with `step_cap`, when the engine's own
step count is not already the cap).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from softtoken.engine.stage import StepView
from softtoken.methods.harness import RunHarness
from softtoken.metrics import lcs_ratio


class DiscreteMonitor:
    """Engine monitor: records each step in the harness, judges discrete prompts, stops on the harness."""

    def __init__(self, run: RunHarness, *, labels: Sequence[str], eval_every: int, score_hard_samples: bool,
                 step_cap: bool = False, diagnostics: Callable[[StepView], Mapping[str, float]] | None = None) -> None:
        """`labels`: the target objectives judged, in target order (several for a universal prompt: their
        predictions are concatenated, their losses averaged)."""
        self.run, self.labels, self.diagnostics, self.step_cap = run, tuple(labels), diagnostics, step_cap
        self.eval_every, self.score_hard_samples = eval_every, score_hard_samples
        self.target = torch.tensor(run.problem.target_ids, device=run.lm.device)
        self.soft_lcs = 0.0

    def __call__(self, view: StepView) -> bool:
        run = self.run
        run.step += 1  # counted across the stages of a program
        predictions = torch.cat([view.predictions[label] for label in self.labels], dim=-1)  # (B*S, T)
        self.soft_lcs = lcs_ratio(predictions[0].tolist(), run.problem.target_ids)
        target_loss = torch.stack([view.objective_losses[label] for label in self.labels]).mean(0)  # (B,)
        metrics = {"loss/target": target_loss.min().item(),
                   "relax/tau_mean": view.temperature.mean().item()}
        if len(view.objective_losses) > len(self.labels):
            metrics["loss/total"] = view.loss.min().item()
        if self.diagnostics is not None:
            self._record_diagnostics(self.diagnostics(view))
        if self.score_hard_samples:
            hits = (predictions == self.target).all(-1)  # (B*S,)
            if hits.any():
                run.judge.score_many(view.sample_index[hits], run.step)
        if run.step % self.eval_every == 0:
            run.evaluate_many(view.logits.argmax(-1), **{"paper/soft_tf_lcs_ratio": self.soft_lcs,
                                                        "relax/tau": [round(float(t), 4) for t in view.temperature[0]]})
        run.log(metrics)
        return run.stopped(step_cap=self.step_cap)

    def _record_diagnostics(self, values: Mapping[str, float]) -> None:
        """Diagnostics (e.g. gradient variance) measured at this step go to the history and the tracker."""
        if values:
            self.run.record({"diag/step": self.run.step, **values})
            self.run.tracker.log(self.run.step, dict(values))

    def offer_final(self, logits: torch.Tensor) -> None:
        """Score the argmax prompt of every returned trajectory (B, L, V)."""
        self.run.judge.score_many(logits.argmax(-1), self.run.step)

    def extra_metrics(self) -> dict[str, float]:
        """The paper's training-path score, a labelled extra next to the judge's."""
        return {"paper/soft_tf_lcs_ratio": self.soft_lcs}
