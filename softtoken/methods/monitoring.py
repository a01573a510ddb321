"""Discrete scoring for engine-based methods: a monitor that judges prompts and stops on an exact match.

Every engine-based method (DLMI, programs) watches its stage through `DiscreteMonitor`: every
`eval_every` steps the argmax prompt of each trajectory is greedy-decoded by the shared evaluator;
with `score_hard_samples` every straight-through sample whose teacher-forced argmax is the target is
confirmed too (for a discrete prompt that is the same event as a greedy exact match, so spotting it
costs no extra forward pass). `build_result` turns what it saw into the shared Result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any

import torch

from softtoken.engine.stage import StepView
from softtoken.lm.evaluation import PromptScore, evaluate_prompts, roundtrip_exact
from softtoken.methods.base import Clock, Problem, Result, Tracker
from softtoken.metrics import lcs_ratio


class BestPrompt:
    """Best discrete prompt seen so far, ordered by PromptScore.key()."""

    def __init__(self) -> None:
        self.score: PromptScore | None = None
        self.step: int = 0

    def offer(self, score: PromptScore, step: int) -> None:
        if self.score is None or score.key() > self.score.key():
            self.score, self.step = score, step


class PromptJudge:
    """Scores discrete prompts with the shared evaluator (cached by ids) and keeps the best one seen."""

    def __init__(self, problem: Problem) -> None:
        self.problem, self.lm = problem, problem.lm
        self.best, self.cache = BestPrompt(), {}
        self.tokens_per_pass = problem.prompt_length + len(problem.target_ids) - 1
        self.eval_tokens = 0  # forward tokens spent by greedy evaluations

    def score(self, prompt_index: torch.Tensor, step: int) -> PromptScore:
        """Score one prompt (L,) of prompt-vocabulary indices and offer it as the best."""
        prompt = self.lm.to_model_ids(prompt_index)  # (L,)
        key = tuple(prompt.tolist())
        if key not in self.cache:
            self.cache[key] = evaluate_prompts(self.lm, prompt.unsqueeze(0), self.problem.target_ids)[0]
            self.eval_tokens += self.tokens_per_pass
        self.best.offer(self.cache[key], step)
        return self.cache[key]

    def confirm_best(self) -> None:
        """Re-score the best prompt through the evaluator (when it was scored by another route)."""
        ids = torch.tensor([self.best.score.prompt_ids], device=self.lm.device)
        self.best.score = evaluate_prompts(self.lm, ids, self.problem.target_ids)[0]
        self.eval_tokens += self.tokens_per_pass

    @property
    def exact(self) -> bool:
        return self.best.score is not None and self.best.score.exact_match


class DiscreteMonitor:
    """Engine monitor scoring discrete prompts; stops on exact match, deadline or step cap."""

    def __init__(self, problem: Problem, *, label: str, eval_every: int, score_hard_samples: bool,
                 clock: Clock, tracker: Tracker, max_steps: int | None = None, max_forward_tokens: int | None = None,
                 diagnostics: Callable[[StepView], Mapping[str, float]] | None = None) -> None:
        self.problem, self.lm, self.label, self.diagnostics = problem, problem.lm, label, diagnostics
        self.eval_every, self.score_hard_samples, self.max_steps = eval_every, score_hard_samples, max_steps
        self.max_forward_tokens = max_forward_tokens
        self.clock, self.tracker = clock, tracker
        self.judge, self.history = PromptJudge(problem), empty_history()
        self.tokens_per_pass = self.judge.tokens_per_pass
        self.train_tokens = self.steps = 0
        self.target = torch.tensor(problem.target_ids, device=self.lm.device)
        self.soft_lcs = 0.0

    def __call__(self, view: StepView) -> bool:
        self.steps += 1  # counted across the stages of a program
        predictions = view.predictions[self.label]  # (B*S, T)
        self.train_tokens += predictions.shape[0] * self.tokens_per_pass
        self.soft_lcs = lcs_ratio(predictions[0].tolist(), self.problem.target_ids)
        loss, tau = view.loss.min().item(), view.temperature.mean().item()
        self.history["loss"].append(loss)
        self.history["tau_mean"].append(tau)
        if self.diagnostics is not None:
            self._record_diagnostics(self.diagnostics(view))
        if self.score_hard_samples:
            hits = (predictions == self.target).all(-1).nonzero().flatten().tolist()
            for index in hits:
                self.judge.score(view.sample_index[index], self.steps)
        if self.steps % self.eval_every == 0:
            scores = [self.judge.score(row.argmax(-1), self.steps) for row in view.logits]
            record_eval(self.history, self.steps, max(scores, key=PromptScore.key), soft_tf_lcs_ratio=self.soft_lcs,
                        tau=[round(float(t), 4) for t in view.temperature[0]])
            self.tracker.log(self.steps, {"loss/target_ce": loss, "relax/tau_mean": tau,
                                          "eval/lcs_ratio": max(s.lcs_ratio for s in scores),
                                          "eval/best_lcs_ratio": self.judge.best.score.lcs_ratio})
        return self.done()

    def _record_diagnostics(self, values: Mapping[str, float]) -> None:
        """Diagnostics (e.g. gradient variance) measured at this step go to the history and the tracker."""
        if not values:
            return
        self.history.setdefault("diag_step", []).append(self.steps)
        for key, value in values.items():
            self.history.setdefault(key, []).append(value)
        self.tracker.log(self.steps, dict(values))

    def done(self) -> bool:
        capped = self.max_steps is not None and self.steps >= self.max_steps
        spent = self.max_forward_tokens is not None and self.forward_tokens >= self.max_forward_tokens
        return self.judge.exact or capped or spent or self.clock.expired()

    @property
    def forward_tokens(self) -> int:
        return self.train_tokens + self.judge.eval_tokens

    def offer_final(self, logits: torch.Tensor) -> None:
        """Score the argmax prompt of every returned trajectory (B, L, V)."""
        for row in logits:
            self.judge.score(row.argmax(-1), self.steps)


def build_result(method: str, config: Any, problem: Problem, judge: PromptJudge, history: dict[str, list], *,
                 steps: int, forward_tokens: int, backward_tokens: int, clock: Clock,
                 extra_metrics: Mapping[str, Any] | None = None) -> Result:
    """The shared Result: the judge's best discrete prompt and its greedy output.

    The wall time is read last, so it includes the final evaluations (fair wall-clock comparisons).
    """
    lm, score = problem.lm, judge.best.score
    metrics = {
        "eval/exact_match": score.exact_match,
        "eval/lcs_ratio": score.lcs_ratio,
        "eval/token_accuracy": score.token_accuracy,
        "eval/roundtrip_exact": roundtrip_exact(lm, score.prompt_ids, problem.target_ids),
        "loss/final": history["loss"][-1] if history.get("loss") else None,
        **(extra_metrics or {}),
    }
    return Result(
        method=method, config=asdict(config), seed=problem.seed,
        target_ids=list(problem.target_ids), target_text=lm.decode(problem.target_ids),
        prompt_ids=list(score.prompt_ids), prompt_text=lm.decode(score.prompt_ids),
        output_ids=list(score.output_ids), output_text=lm.decode(score.output_ids), metrics=metrics,
        success_step=judge.best.step if score.exact_match else None, steps_run=steps,
        wall_time_s=clock.elapsed(), forward_tokens=forward_tokens, backward_tokens=backward_tokens, history=history,
    )


def monitor_result(method: str, config: Any, problem: Problem, monitor: DiscreteMonitor, *, backward_tokens: int,
                   clock: Clock) -> Result:
    """build_result for an engine-based method watched by a DiscreteMonitor."""
    return build_result(method, config, problem, monitor.judge, monitor.history, steps=monitor.steps,
                        forward_tokens=monitor.forward_tokens, backward_tokens=backward_tokens, clock=clock,
                        extra_metrics={"paper/soft_tf_lcs_ratio": monitor.soft_lcs})


def empty_history() -> dict[str, list]:
    return {"loss": [], "tau_mean": [], "eval_step": [], "eval_lcs_ratio": [], "eval_exact_match": [],
            "soft_tf_lcs_ratio": [], "tau": []}


def record_eval(history: dict[str, list], step: int, score: PromptScore, **extras: Any) -> None:
    """Append one evaluation to the history: step, LCS, exact match, plus method-specific extras."""
    history.setdefault("eval_step", []).append(step)
    history.setdefault("eval_lcs_ratio", []).append(score.lcs_ratio)
    history.setdefault("eval_exact_match", []).append(score.exact_match)
    for key, value in extras.items():
        history.setdefault(key, []).append(value)
