"""The run harness every inversion method shares: clock, budget, token counts, judge, history, result.

A method's file holds only its algorithm; everything around the loop lives here once:

    run = self.harness(problem, budget, tracker)      # clock, budget, generator, judge, history
    for step in run.steps():                          # stops on budget or an exact match
        ...                                           # the algorithm; model passes count themselves
        run.log({"loss/target": loss})                # slash-keyed history, tracker every step
        if step % eval_every == 0:
            run.evaluate(prompt_index)                # greedy judge, `eval/*` history
    return run.result(self.name, self.config, final=prompt_index)

Token counts come from the model wrapper (`SoftLM.tokens`), so no method counts passes by hand and
the forward-token budget sees every pass: training, candidate scoring and the judge's decoding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict
from typing import Any

import torch

from softtoken.lm.evaluation import PromptScore, combine_scores, evaluate_prompts, roundtrip_exact
from softtoken.methods.base import Budget, Clock, NullTracker, Problem, Result, Tracker
from softtoken.objectives import Objective, ObjectiveContext


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

    def score(self, prompt_index: torch.Tensor, step: int) -> PromptScore:
        """Score one prompt (L,) of prompt-vocabulary indices and offer it as the best."""
        return self.score_many(prompt_index.unsqueeze(0), step)[0]

    def score_many(self, prompt_index: torch.Tensor, step: int) -> list[PromptScore]:
        """Score prompts (N, L) of prompt-vocabulary indices, in order, offering each as the best. The ones not
        judged before are decoded in one batch: one-token steps are bound by reading the weights, so on the
        embedded model four prompts take 1.5 times one prompt's time, not 4 (bench/screens/adc_speed.py)."""
        keys = [tuple(row) for row in self.lm.to_model_ids(prompt_index).tolist()]
        self._decode_new(keys)
        scores = [combine_scores(self.cache[key]) for key in keys]
        for score in scores:
            self.best.offer(score, step)
        return scores

    def per_target(self, prompt_ids: tuple[int, ...]) -> list[PromptScore]:
        """The greedy judgement of one prompt (model ids) on each target, in its own frame; cached by ids."""
        self._decode_new([prompt_ids])
        return self.cache[prompt_ids]

    def _decode_new(self, keys: list[tuple[int, ...]]) -> None:
        """Greedy-decode the prompts (model ids) of `keys` not in the cache, one batch per target, into it."""
        new = list(dict.fromkeys(key for key in keys if key not in self.cache))
        if not new:
            return
        ids = torch.tensor(new, device=self.lm.device)  # (N, L)
        judged = [evaluate_prompts(lm, ids, target) for lm, target in self.problem.framed_targets()]  # (targets, N)
        for index, key in enumerate(new):
            self.cache[key] = [scores[index] for scores in judged]

    def confirm_best(self) -> None:
        """Re-score the best prompt through the evaluator (when it was scored by another route)."""
        self.best.score = combine_scores(self.per_target(tuple(self.best.score.prompt_ids)))

    @property
    def exact(self) -> bool:
        return self.best.score is not None and self.best.score.exact_match


class RunHarness:
    """One run's clock, budget, generator, judge and history; builds the shared Result."""

    def __init__(self, problem: Problem, budget: Budget | None, *, steps: int, tracker: Tracker | None = None) -> None:
        self.problem, self.lm = problem, problem.lm
        self.budget = budget or Budget()
        self.clock = Clock(self.budget.seconds)
        self.max_steps = self.budget.resolve_steps(steps)
        self.generator = torch.Generator(device=self.lm.device).manual_seed(problem.seed)
        self.tracker = tracker or NullTracker()
        self.context = ObjectiveContext(target_ids=problem.target_ids)
        self.judge = PromptJudge(problem)
        self.history: dict[str, list] = {}
        self.step = 0
        self._evaluated: dict[str, float] = {}  # this step's evaluation, sent with the next log()
        self._tokens_at_start = self.lm.tokens.snapshot()

    # ----------------------------------------------------------------- budget
    @property
    def forward_tokens(self) -> int:
        return self.lm.tokens.forward - self._tokens_at_start[0]

    @property
    def backward_tokens(self) -> int:
        return self.lm.tokens.backward - self._tokens_at_start[1]

    def stopped(self, *, step_cap: bool = True) -> bool:
        """No further step: the step cap (unless the caller's loop enforces it), the deadline or the compute
        budget is reached, or the target is hit."""
        return ((step_cap and self.step >= self.max_steps) or self.clock.expired()
                or self.budget.compute_spent(self.forward_tokens) or self.judge.exact)

    def steps(self) -> Iterator[int]:
        """Step numbers 1, 2, ... while the run may go on (checked before each step)."""
        while not self.stopped():
            self.step += 1
            yield self.step

    # ----------------------------------------------------------------- history
    def record(self, metrics: Mapping[str, Any]) -> None:
        """Append values under their slash keys (no tracker)."""
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)

    def log(self, metrics: Mapping[str, float]) -> None:
        """This step's metrics: into the history and to the tracker (with the best LCS so far)."""
        self.record(metrics)
        best = self.judge.best.score
        shown = {**metrics, **self._evaluated, **({"eval/best_lcs_ratio": best.lcs_ratio} if best else {})}
        self._evaluated = {}
        self.tracker.log(self.step, shown)

    def evaluate(self, prompt_index: torch.Tensor, **extras: Any) -> PromptScore:
        """Judge one prompt (L,) and record `eval/step`, `eval/lcs_ratio`, `eval/exact_match` (+ extras)."""
        return self.evaluate_many(prompt_index.unsqueeze(0), **extras)

    def evaluate_many(self, prompt_index: torch.Tensor, **extras: Any) -> PromptScore:
        """Judge prompts (N, L); record the best of them once."""
        best = max(self.judge.score_many(prompt_index, self.step), key=PromptScore.key)
        self._record_evaluation(best, extras)
        self._evaluated = {"eval/lcs_ratio": best.lcs_ratio, "eval/exact_match": float(best.exact_match)}
        return best

    def _record_evaluation(self, score: PromptScore, extras: Mapping[str, Any], *, final: bool = False) -> None:
        self.record({"eval/step": self.step, "eval/seconds": round(self.clock.elapsed(), 3),
                     "eval/lcs_ratio": score.lcs_ratio, "eval/exact_match": score.exact_match,
                     "eval/final": final, **extras})

    # ----------------------------------------------------------------- result
    def result(self, method: str, config: Any, *, final: torch.Tensor | None = None,
               extra_metrics: Mapping[str, Any] | None = None, objective: Objective | None = None) -> Result:
        """The shared Result: the judge's best discrete prompt and its greedy output.

        `final` (L,): the prompt to judge if nothing was judged yet (the budget ran out first); the final
        judgement is the history's last `eval/*` entry (`eval/final` true), so a run that ends before its
        first `eval_every` still has a point. `objective` names the loss in `loss/kind`. Token counts cover
        the search and its judge, not the round-trip report below; the wall time is read last, so it
        includes every evaluation (fair wall-clock comparisons), and `time/overtime_s` says how far past
        the time budget it ran."""
        if self.judge.best.score is None:
            if final is None:
                raise RuntimeError(f"{method}: no prompt was judged and no final prompt given")
            self.judge.score(final, self.step)
        lm, score, problem = self.lm, self.judge.best.score, self.problem
        self._record_evaluation(score, {}, final=True)
        forward, backward = self.forward_tokens, self.backward_tokens
        losses = self.history.get("loss/target")
        metrics = {
            "eval/exact_match": score.exact_match,
            "eval/lcs_ratio": score.lcs_ratio,
            "eval/token_accuracy": score.token_accuracy,
            "eval/roundtrip_exact": all(roundtrip_exact(framed, score.prompt_ids, target)
                                        for framed, target in problem.framed_targets()),
            "loss/final": losses[-1] if losses else None,
            "loss/kind": objective.describe() if objective is not None else None,
            **(extra_metrics or {}),
        }
        if problem.universal:
            metrics["eval/targets"] = self._target_report(score)
        seconds = self.clock.elapsed()
        if self.budget.seconds is not None:
            metrics["time/overtime_s"] = round(max(0.0, seconds - self.budget.seconds), 3)
        return Result(
            method=method, config=asdict(config), seed=problem.seed,
            target_ids=list(problem.target_ids), target_text=lm.decode(problem.target_ids),
            prompt_ids=list(score.prompt_ids), prompt_text=lm.decode(score.prompt_ids),
            output_ids=list(score.output_ids), output_text=lm.decode(score.output_ids), metrics=metrics,
            success_step=self.judge.best.step if score.exact_match else None, steps_run=self.step,
            wall_time_s=seconds, forward_tokens=forward, backward_tokens=backward,
            history=self.history, context=self._context(),
        )

    def _context(self) -> dict[str, Any]:
        """What was around the prompt: the frame, or each universal target's frame; {} for a bare prompt."""
        if self.problem.universal:
            return {"universal": [{"target_ids": list(t.target_ids), **t.frame.to_dict()}
                                  for t in self.problem.universal]}
        return {} if self.lm.frame.empty else self.lm.frame.to_dict()

    def _target_report(self, score: PromptScore) -> list[dict[str, Any]]:
        """A universal prompt's judgement on each target."""
        scores = self.judge.per_target(tuple(score.prompt_ids))  # judged already: read from the cache
        return [{"target_text": self.lm.decode(target), "output_text": self.lm.decode(s.output_ids),
                 "exact_match": s.exact_match, "lcs_ratio": s.lcs_ratio}
                for s, (_, target) in zip(scores, self.problem.framed_targets())]


class ConfiguredMethod:
    """What every method shares: a config (default `config_class()`) and the harness of a run."""

    name: str = ""
    config_class: type | None = None
    universal: bool = False  # whether the method optimises one prompt for several targets (Problem.universal)

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()

    def harness(self, problem: Problem, budget: Budget | None, tracker: Tracker | None = None) -> RunHarness:
        """The run's harness; the step cap is the budget's, else the config's `epochs`."""
        self.check_problem(problem)
        return RunHarness(problem, budget, steps=self.config.epochs, tracker=tracker)

    def check_problem(self, problem: Problem) -> None:
        if problem.universal and not self.universal:
            raise ValueError(f"method {self.name!r} optimises a prompt for one target; for a universal prompt "
                             f"use gcg, dlmi or program (their presets: gcg-fast, gcg-combo, gbda, anneal, ...)")
