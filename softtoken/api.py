"""One-call Python entry points."""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from softtoken.configcheck import as_tuple, check_keys
from softtoken.data.targets import Target, TargetSet, load_targets
from softtoken.engine import Stage, program_from_dict, run_program
from softtoken.experiments.batch import BatchRun, invert_targets, universal_problem
from softtoken.lm.evaluation import evaluate_prompts
from softtoken.lm.frame import build_frame, check_frame_options
from softtoken.lm.loading import LoadedModel, resolve_device, resolve_dtype
from softtoken.lm.softlm import SoftLM, as_softlm
from softtoken.lm.token_classes import check_vocabulary_limits
from softtoken.lm.vocab import limit_vocabulary
from softtoken.methods import Budget, Problem, ProgramConfig, ProgramMethod, Result, Tracker, build_method
from softtoken.objectives import ObjectiveContext

__all__ = ["as_softlm", "build_method", "design", "invert", "invert_many", "invert_universal", "method_from_config",
           "plan_invert"]

DESIGN_KEYS = {"stages", "prompt_length", "target", "target_ids", "seed"}


def invert(
    target: str | None = None,
    model: str | LoadedModel | SoftLM | torch.nn.Module | None = None,
    *,
    target_ids: Sequence[int] | None = None,
    tracker: Tracker | None = None,
    **settings: Any,
) -> Result:
    """Find a discrete prompt that makes `model` greedily emit `target` (text or `target_ids`).

    `model`: a name or path (None: the embedded default), a LoadedModel or SoftLM, or an already loaded Hugging
    Face model with `tokenizer=` (as nanoGCG's `run(model, tokenizer, ...)` is called). `settings`: the
    fields of `plan_invert` (method, preset, config, prompt_length, steps, time_budget, seed, device,
    dtype, prefix, suffix, template, chat, system, allowed, banned, tokenizer); other keywords are method
    options."""
    check_target(target, target_ids)
    plan = plan_invert(model, **settings)
    lm = plan.framed(plan.load())
    ids = tuple(int(i) for i in target_ids) if target_ids is not None else lm.encode_target(target)
    problem = Problem(lm=lm, target_ids=ids, prompt_length=plan.prompt_length, seed=plan.seed)
    return plan.runner.run(problem, plan.budget, tracker)


def invert_many(targets: str | Path | TargetSet | Sequence[str], model: Any = None, *, out: str | Path | None = None,
                **settings: Any) -> list[Result]:
    """Invert every target with the model loaded once (settings as `invert`); with `out`, one result line per
    target in OUT/results.jsonl as it goes, and a rerun resumes without redoing finished targets. Targets
    may carry their own context (prefix, suffix, template, chat, system). -> one Result per finished target."""
    plan, target_set = plan_invert(model, **settings), as_target_set(targets)
    lm = plan.load()
    records = invert_targets(lm, plan.runner, target_set, plan.batch(), out=None if out is None else Path(out),
                             model_name=lm.name)
    return [Result.from_dict(r["result"]) for r in records if r.get("status") == "ok"]


def invert_universal(targets: str | Path | TargetSet | Sequence[str], model: Any = None, *,
                     tracker: Tracker | None = None, **settings: Any) -> Result:
    """ONE prompt that makes the model emit each target in its own context (settings as `invert`): the loss
    is the mean over targets; `metrics["eval/targets"]` has each target's judgement, `exact_match` is all."""
    plan, target_set = plan_invert(model, **settings), as_target_set(targets)
    lm = plan.load()
    problem = universal_problem(lm, target_set, plan.batch(), model_name=lm.name)
    return plan.runner.run(problem, plan.budget, tracker)


@dataclass(frozen=True, kw_only=True)
class InvertPlan:
    """An inversion's settings, checked before any model loads; `load` then gives the model to run on."""

    runner: Any
    budget: Budget
    prompt_length: int
    seed: int
    context: dict[str, Any]  # frame options for build_frame
    allowed: str | None
    banned: tuple[str, ...]
    model: Any
    tokenizer: Any
    device: str
    dtype: str

    def load(self) -> SoftLM:
        """The model with the plan's prompt vocabulary (its context is added per target by `framed`)."""
        lm = as_softlm(self.model, tokenizer=self.tokenizer, device=self.device, dtype=self.dtype)
        return limit_vocabulary(lm, self.allowed, self.banned)

    def framed(self, lm: SoftLM) -> SoftLM:
        return lm.framed(build_frame(lm.tokenizer, **self.context, model_name=lm.name))

    def batch(self) -> BatchRun:
        """The shared settings of a many-target run, with what a resume must match."""
        model = self.model if isinstance(self.model, str) or self.model is None else type(self.model).__name__
        identity = {"method": self.runner.name, "config": _plain(self.runner.config), "model": model,
                    "dtype": self.dtype, "allowed": self.allowed, "banned": list(self.banned)}
        return BatchRun(prompt_length=self.prompt_length, seed=self.seed, budget=self.budget,
                        context={k: v for k, v in self.context.items() if v not in (None, "", False)},
                        identity=_plain(identity))


def plan_invert(model: Any = None, *, method: str | None = None, preset: str | None = None,
                config: Mapping[str, Any] | None = None, prompt_length: int = 10, steps: int | None = None,
                time_budget: float | None = None, seed: int = 0, device: str = "cpu", dtype: str = "float32",
                prefix: str = "", suffix: str = "", template: str | None = None, chat: bool = False,
                system: str | None = None, allowed: str | None = None, banned: Sequence[str] = (),
                tokenizer: Any = None, **options: Any) -> InvertPlan:
    """Check every setting of an inversion that needs no model: method and options, budget, prompt length,
    device, context options, vocabulary limits. Each bad value is a one-line ValueError."""
    if config is not None and (method or preset or options):
        raise ValueError("config replaces method/preset/options; give one or the other")
    runner = method_from_config(config) if config is not None else build_method(method, preset, options)
    if not isinstance(prompt_length, int) or isinstance(prompt_length, bool):
        raise ValueError(f"prompt_length must be an integer, got {prompt_length!r}")
    if prompt_length < 1:
        raise ValueError(f"prompt_length must be >= 1, got {prompt_length}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    check_device(model, device, dtype)
    context = {"prefix": prefix, "suffix": suffix, "template": template, "chat": chat, "system": system}
    check_frame_options(**context)
    check_vocabulary_limits(allowed, banned)
    return InvertPlan(runner=runner, budget=Budget(steps=steps, seconds=time_budget), prompt_length=prompt_length,
                      seed=seed, context=context, allowed=allowed, banned=tuple(banned), model=model,
                      tokenizer=tokenizer, device=device, dtype=dtype)


def as_target_set(targets: str | Path | TargetSet | Sequence[str]) -> TargetSet:
    """A target file (the formats `load_targets` reads), a TargetSet, or a list of texts (ids t0, t1, ...)."""
    if isinstance(targets, TargetSet):
        return targets
    if isinstance(targets, (str, Path)):
        return load_targets(targets)
    return TargetSet(targets=tuple(Target(id=f"t{i}", text=text) for i, text in enumerate(targets)))


def _plain(value: Any) -> Any:
    """JSON's view of a value (tuples become lists), so a stored run and a new one compare equal."""
    return json.loads(json.dumps(asdict(value) if is_dataclass(value) else value, default=str))


def check_target(text: str | None, target_ids: Sequence[int] | None) -> None:
    """Exactly one non-empty target, a text or integer ids: checked before any model loads."""
    if text and target_ids is not None:
        raise ValueError(f"give a target text or target ids, not both: got {text!r} and {list(target_ids)}")
    if not (text if target_ids is None else len(target_ids)):
        raise ValueError("target is empty: give a non-empty target text or target ids")
    bad = [i for i in target_ids or () if not isinstance(i, numbers.Integral) or isinstance(i, bool)]
    if bad:
        raise ValueError(f"target ids must be integers, got {bad[:5]}")


def check_device(model: Any, device: str, dtype: str) -> None:
    """Reject a bad device or dtype before a model named by `model` is loaded (a loaded one ignores both)."""
    if model is None or isinstance(model, str):
        resolve_device(device)
        resolve_dtype(dtype)


def method_from_config(data: Mapping[str, Any]):
    """A method from a config mapping: `{stages: [...], eval_every, ...}` is a program, otherwise
    `{method: NAME, preset: NAME, options: {...}}`."""
    if "stages" in data:
        return _program_method(data)
    unknown = sorted(set(data) - {"method", "preset", "options"})
    if unknown:
        raise ValueError(f"config keys {unknown} unknown; use 'stages' (a program) or method/preset/options")
    return build_method(data.get("method"), data.get("preset"), dict(data.get("options") or {}))


def _program_method(data: Mapping[str, Any]) -> ProgramMethod:
    check_keys(ProgramConfig, data, "program config")
    stages = data["stages"]
    return ProgramMethod(ProgramConfig(**{**data, "stages": tuple(stages) if isinstance(stages, list) else stages}))


def design(config: Mapping[str, Any], model: str | LoadedModel | SoftLM | None = None, *, device: str = "cpu",
           dtype: str = "float32", tracker: Tracker | None = None) -> dict[str, Any]:
    """Run a multi-objective program (no target required) and report every trajectory's prompt.

    `config`: `prompt_length`, `stages` (each with `objectives`), optional `target` / `target_ids`
    (then each prompt is also greedy-decoded and scored) and `seed`.
    """
    plan = plan_design(config)
    check_device(model, device, dtype)
    lm = as_softlm(model, device=device, dtype=dtype)
    target = plan.target_ids if plan.target_ids is not None else lm.encode_target(plan.text) if plan.text else ()
    result = run_program(lm, plan.stages, ObjectiveContext(target_ids=target), tracker=tracker, seed=plan.seed)
    final = result.final
    trajectories = [{"prompt_ids": ids, "prompt_text": lm.decode(ids), "loss": loss,
                     "objective_losses": {label: values[b] for label, values in final.objective_losses.items()}}
                    for b, (ids, loss) in enumerate(zip(final.prompt_ids, final.loss))]
    if target:
        for entry, score in zip(trajectories, evaluate_prompts(lm, torch.tensor(final.prompt_ids), target)):
            entry.update(output_text=lm.decode(score.output_ids), exact_match=score.exact_match,
                         lcs_ratio=score.lcs_ratio, token_accuracy=score.token_accuracy)
    return {"config": dict(config), "target_ids": list(target), "trajectories": trajectories,
            "history": result.to_dict()["stages"]}


class DesignPlan(NamedTuple):
    stages: tuple[Stage, ...]  # sized to the config's prompt_length
    seed: int
    text: str | None  # the target text, encoded once the model is loaded
    target_ids: tuple[int, ...] | None


def plan_design(config: Mapping[str, Any]) -> DesignPlan:
    """Everything in a design config that can be checked without a model, checked."""
    unknown = sorted(set(config) - DESIGN_KEYS)
    if unknown:
        raise ValueError(f"design config: unknown keys {unknown}; valid: {sorted(DESIGN_KEYS)}")
    if "prompt_length" not in config:
        raise ValueError("design config needs 'prompt_length'")
    seed = config.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"design config: seed must be int, got {seed!r} ({type(seed).__name__})")
    stages = program_from_dict({"stages": config.get("stages")})
    length = config["prompt_length"]
    stages = tuple(replace(stage, config=replace(stage.config, prompt_length=length)) for stage in stages)
    text, target_ids = config.get("target"), config.get("target_ids")
    if text is not None or target_ids is not None:
        target_ids = None if target_ids is None else as_tuple(target_ids, "design config target_ids")
        check_target(text, target_ids)
    return DesignPlan(stages=stages, seed=seed, text=text, target_ids=target_ids)
