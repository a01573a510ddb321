"""DLMI: language-model inversion through end-to-end differentiation (arXiv 2602.11044).

The prompt is a logit matrix Z (L x V). Each step draws B Gumbel samples of Z, relaxes them with a
(per-position, learnable) temperature into distributions over tokens, feeds their mixture of token
embeddings to the frozen model and descends the target cross-entropy, teacher-forced (one forward
pass) or free-running / BPTT. Adam updates Z and the temperatures. The discrete prompt argmax Z is
greedy-decoded every `eval_every` steps; the run stops on an exact match.

DLMI is a preset of the engine: `dlmi_stage` maps the seed table's options onto one StageConfig
(one trajectory, B Gumbel samples, no gradient normalisation) and the loop is `engine.run_stage`;
this module only adds the discrete evaluation and the stopping rule, through a monitor.

    lm = SoftLM(model, tokenizer)
    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = DLMI(dlmi_paper()).run(problem, Budget(seconds=60))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from softtoken.configcheck import check_types
from softtoken.engine import (
    MERGERS,
    NonFiniteGradientError,
    OptimizerConfig,
    Ramp,
    StageConfig,
    StepView,
    run_stage,
)
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.lm.softlm import SoftLM
from softtoken.methods.base import Budget, NonFiniteLossError, Problem, Result, Tracker, register_method
from softtoken.methods.diagnostics import (
    estimate_gradient_bias,
    gradient_moments,
    reinforce_reference_sampler,
    variance_summary,
)
from softtoken.methods.harness import ConfiguredMethod
from softtoken.methods.monitoring import DiscreteMonitor
from softtoken.objectives import (
    FreeRunningTargetCE,
    Objective,
    ObjectiveContext,
    RelaxedFeedback,
    TargetCE,
)
from softtoken.objectives.target import per_target
from softtoken.relax import GUMBEL_KINDS, HARD_METHODS, gumbel_noise, relax
from softtoken.relax.temperature import THETA_INITS

DIAGNOSTICS_SEED_OFFSET = 7_919  # diagnostics draw from seed + this, never from the run's stream
INIT_STRATEGIES = ("randn", "zeros", "normal")
LOSSES = ("crossentropy",)


@dataclass(frozen=True, kw_only=True)
class DLMIConfig:
    """Option names follow the DLMI reference's seed table where they apply."""

    batch_size: int = 8  # parallel Gumbel samples of the same Z per step
    epochs: int = 2048  # optimiser steps
    learning_rate: float = 0.1  # Adam lr on Z (and on theta unless temperature_learning_rate)
    temperature_learning_rate: float | None = None  # None: same as learning_rate (the reference)
    temperature: float = 100.0  # tau0, > 0
    learnable_temperature: bool = True
    decouple_learnable_temperature: bool = True  # one tau per prompt position
    temperature_theta_init: str = "uniform"  # uniform: theta ~ U[0,1) (reference); zero: tau = tau0
    stgs_hard: bool = False  # straight-through (hard forward) instead of soft GS
    stgs_hard_method: str = "argmax"  # argmax (textbook ST-GS) or categorical (reference)
    gumbel_kind: str = "truncated"  # truncated u <= 0.999 (reference) or standard
    gumbel_noise_scale: float = 1.0  # multiplies the Gumbel noise, >= 0
    teacher_forcing: bool = True  # one forward pass on [prompt ; target[:-1]]
    bptt: bool = False  # free-running rollout with relaxed feedback
    bptt_temperature: float = 100.0
    bptt_learnable_temperature: bool = False
    bptt_decouple_learnable_temperature: bool = False  # one tau per output position
    bptt_stgs_hard: bool = False
    bptt_hidden_state_conditioning: bool = False  # tau from the last hidden state (can only rise)
    init_strategy: str = "randn"  # randn N(0,1), zeros, normal N(0, init_std)
    init_std: float = 1.0
    losses: str = "crossentropy"
    eval_every: int = 10  # steps between discrete evaluations, >= 1
    score_hard_samples: bool = False  # ST + TF only: every hard sample is a discrete prompt, scored for free
    compute_dtype: str = "float32"  # model passes under autocast; bfloat16: 1.8-2.6x a plain float32 step here (docs/benchmarks.md §5)
    compile_model: bool = False  # decoder layers through torch.compile (StageConfig.compile_model)
    # Gradient diagnostics (dlmi-reference.md §6.2-6.3); they draw from their own generator, so the
    # trajectory is the same with and without them. Period 0 = off.
    stgs_grad_variance_period: int = 0  # steps between variance measurements
    stgs_grad_variance_samples: int = 0  # fresh STGS gradient samples of Z per measurement (>= 2 enables)
    stgs_grad_bias_period: int = 0  # steps between STGS - REINFORCE mean-gradient differences
    stgs_grad_bias_samples: int = 0  # STGS samples (>= 1 enables; shared with the variance samples)
    stgs_grad_bias_reference_samples: int = 0  # REINFORCE reference samples (>= 1 enables)
    stgs_grad_bias_reference_use_baseline: bool = True
    stgs_grad_bias_reference_baseline_beta: float = 0.9
    stgs_grad_bias_reference_reward_scale: float = 1.0
    eps: float = 1e-10
    merger: str = "weighted_sum"  # how a universal prompt's per-target gradients merge (engine MERGERS)

    def __post_init__(self) -> None:
        check_types(self)
        positive = ("batch_size", "epochs", "learning_rate", "temperature", "bptt_temperature", "eval_every", "init_std")
        for name in positive:
            if not 0 < getattr(self, name) < math.inf:
                raise ValueError(f"DLMIConfig.{name} must be finite and > 0, got {getattr(self, name)}")
        choices = {
            "stgs_hard_method": HARD_METHODS,
            "gumbel_kind": GUMBEL_KINDS,
            "init_strategy": INIT_STRATEGIES,
            "losses": LOSSES,
            "temperature_theta_init": THETA_INITS,
            "compute_dtype": COMPUTE_DTYPES,
            "merger": tuple(sorted(MERGERS)),
        }
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"DLMIConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")
        if self.temperature_learning_rate is not None and not self.temperature_learning_rate > 0:
            raise ValueError(f"DLMIConfig.temperature_learning_rate must be > 0, got {self.temperature_learning_rate}")
        if self.gumbel_noise_scale < 0:
            raise ValueError(f"DLMIConfig.gumbel_noise_scale must be >= 0, got {self.gumbel_noise_scale}")
        self._check_combinations()

    def _check_combinations(self) -> None:
        if self.decouple_learnable_temperature and not self.learnable_temperature:
            raise ValueError("DLMIConfig: decouple_learnable_temperature=True needs learnable_temperature=True")
        if self.bptt and self.teacher_forcing:
            raise ValueError("DLMIConfig: bptt=True rolls out free-running; set teacher_forcing=False")
        bptt_options = ("bptt_learnable_temperature", "bptt_decouple_learnable_temperature",
                        "bptt_stgs_hard", "bptt_hidden_state_conditioning")
        set_without_bptt = [name for name in bptt_options if getattr(self, name) and not self.bptt]
        if set_without_bptt:
            raise ValueError(f"DLMIConfig: {set_without_bptt} need bptt=True")
        if self.bptt_decouple_learnable_temperature and not self.bptt_learnable_temperature:
            raise ValueError("DLMIConfig: bptt_decouple_learnable_temperature=True needs bptt_learnable_temperature=True")
        for name in ("stgs_grad_variance_period", "stgs_grad_variance_samples", "stgs_grad_bias_period",
                     "stgs_grad_bias_samples", "stgs_grad_bias_reference_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"DLMIConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.stgs_grad_variance_period > 0 and self.stgs_grad_variance_samples < 2:
            raise ValueError("DLMIConfig: stgs_grad_variance_period > 0 needs stgs_grad_variance_samples >= 2, "
                             f"got {self.stgs_grad_variance_samples}")
        if self.bptt and (self.stgs_grad_variance_period or self.stgs_grad_bias_period):
            raise ValueError("DLMIConfig: gradient diagnostics are not supported with bptt=True")
        if self.score_hard_samples and not (self.stgs_hard and self.teacher_forcing):
            raise ValueError("DLMIConfig: score_hard_samples=True needs stgs_hard=True and teacher_forcing=True")
        if self.bptt_hidden_state_conditioning and self.bptt_learnable_temperature:
            raise ValueError("DLMIConfig: bptt_hidden_state_conditioning replaces bptt_learnable_temperature; set one")


def dlmi_stage(config: DLMIConfig, prompt_length: int, steps: int) -> StageConfig:
    """The engine stage that is DLMI: one trajectory, `batch_size` Gumbel samples, Adam, no normalisation."""
    learnable = "none"
    if config.learnable_temperature:
        learnable = "per_position" if config.decouple_learnable_temperature else "shared"
    return StageConfig(
        steps=steps, trajectories=1, samples=config.batch_size, prompt_length=prompt_length,
        lr=config.learning_rate, optimizer=OptimizerConfig(kind="adam"),
        soft=Ramp.fixed(1.0), hard=Ramp.fixed(1.0 if config.stgs_hard else 0.0),
        temperature=Ramp.fixed(config.temperature), learnable_temperature=learnable,
        temperature_theta_init=config.temperature_theta_init, temperature_lr=config.temperature_learning_rate,
        gumbel_scale=config.gumbel_noise_scale, gumbel_kind=config.gumbel_kind, hard_method=config.stgs_hard_method,
        init="zeros" if config.init_strategy == "zeros" else "randn",
        init_std=config.init_std if config.init_strategy == "normal" else 1.0,
        normalize="none", save_best=False, track_every=config.eval_every, compute_dtype=config.compute_dtype,
        compile_model=config.compile_model, merger=config.merger,
    )


def dlmi_objective(config: DLMIConfig, lm: SoftLM, target_length: int, generator: torch.Generator) -> Objective:
    """Teacher-forced CE, free-running CE with greedy feedback, or BPTT through a relaxed feedback."""
    if config.teacher_forcing:
        return TargetCE()
    if not config.bptt:
        return FreeRunningTargetCE()
    feedback = RelaxedFeedback(
        lm, tau0=config.bptt_temperature, learnable=config.bptt_learnable_temperature,
        num=target_length if config.bptt_decouple_learnable_temperature else 1,
        hidden_conditioning=config.bptt_hidden_state_conditioning, hard=config.bptt_stgs_hard,
        hard_method=config.stgs_hard_method, gumbel_kind=config.gumbel_kind, gumbel_scale=config.gumbel_noise_scale,
        theta_init=config.temperature_theta_init, eps=config.eps, generator=generator,
    )
    return FreeRunningTargetCE(feedback_module=feedback)


class StgsDiagnostics:
    """STGS gradient variance (Welford over fresh Gumbel draws) and the STGS - REINFORCE difference.

    The bias figure compares two estimators of *different* objectives (relaxed soft-input loss vs.
    expected discrete free-running loss), see methods/diagnostics.py; it is reported, not corrected.
    """

    def __init__(self, lm: SoftLM, config: DLMIConfig, problem: Problem, objective: Objective) -> None:
        self.lm, self.config, self.objective = lm, config, objective
        self.context = ObjectiveContext(target_ids=problem.target_ids)
        self.target = torch.tensor(problem.target_ids, device=lm.device)
        # An own stream: diagnostics must not shift the run's Gumbel draws.
        self.generator = torch.Generator(device=lm.device).manual_seed(problem.seed + DIAGNOSTICS_SEED_OFFSET)

    def __call__(self, view: StepView) -> dict[str, float]:
        cfg, step = self.config, view.step
        want_variance = cfg.stgs_grad_variance_period > 0 and step % cfg.stgs_grad_variance_period == 0
        want_bias = (cfg.stgs_grad_bias_period > 0 and step % cfg.stgs_grad_bias_period == 0
                     and cfg.stgs_grad_bias_samples >= 1 and cfg.stgs_grad_bias_reference_samples >= 1)
        if not (want_variance or want_bias):
            return {}
        logits = view.logits[:1].detach().requires_grad_(True)  # (1, L, V)
        tau = view.temperature[0].view(1, -1, 1)  # (1, n, 1)
        stats, moments = {}, None
        if want_variance:
            moments = gradient_moments(lambda: self._stgs_gradient(logits, tau), cfg.stgs_grad_variance_samples)
            stats |= variance_summary(moments, "diag/stgs_grad")
        if want_bias:
            reference = reinforce_reference_sampler(
                self.lm, logits, self.target, self.generator, batch=cfg.batch_size,
                use_baseline=cfg.stgs_grad_bias_reference_use_baseline,
                baseline_beta=cfg.stgs_grad_bias_reference_baseline_beta,
                reward_scale=cfg.stgs_grad_bias_reference_reward_scale)
            stats |= estimate_gradient_bias(lambda: self._stgs_gradient(logits, tau), reference,
                                            cfg.stgs_grad_bias_samples, cfg.stgs_grad_bias_reference_samples,
                                            samples=moments)
        return stats

    def _stgs_gradient(self, logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """One B-sample STGS gradient of the mean loss w.r.t. Z (1, L, V), with fresh Gumbel noise."""
        cfg = self.config
        noise = gumbel_noise((cfg.batch_size, *logits.shape[1:]), generator=self.generator, kind=cfg.gumbel_kind,
                             eps=cfg.eps, device=logits.device)
        probs = relax(logits.expand(cfg.batch_size, -1, -1), tau, noise=noise, noise_scale=cfg.gumbel_noise_scale,
                      hard=cfg.stgs_hard, hard_method=cfg.stgs_hard_method, generator=self.generator)
        loss = self.objective.loss(self.lm, probs, self.context).mean()
        return torch.autograd.grad(loss, logits)[0]


@register_method("dlmi")
class DLMI(ConfiguredMethod):
    """Gumbel-softmax inversion with learnable per-position temperatures and Adam on the logits."""

    name = "dlmi"
    config_class = DLMIConfig
    universal = True

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise Z until exact match, the step budget or the time budget; return the best discrete prompt."""
        cfg, lm, run = self.config, problem.lm, self.harness(problem, budget, tracker)
        objective = dlmi_objective(cfg, lm, len(problem.target_ids), run.generator)
        # A universal prompt: one objective per target, merged by the stage's `merger` like any objectives.
        objectives = per_target(objective, problem.universal) if problem.universal else (objective,)
        if problem.universal and (cfg.stgs_grad_variance_period or cfg.stgs_grad_bias_period):
            raise ValueError("DLMI gradient diagnostics measure one target's loss; turn them off for a universal prompt")
        monitor = DiscreteMonitor(run, labels=[o.label for o in objectives], eval_every=cfg.eval_every,
                                  score_hard_samples=cfg.score_hard_samples,
                                  diagnostics=StgsDiagnostics(lm, cfg, problem, objective))
        try:
            stage = run_stage(lm, dlmi_stage(cfg, problem.prompt_length, run.max_steps), list(objectives), run.context,
                              generator=run.generator, monitor=monitor)
        except NonFiniteGradientError as err:
            raise NonFiniteLossError(f"DLMI: {err}") from err
        monitor.offer_final(stage.logits)
        return run.result(self.name, cfg, extra_metrics=monitor.extra_metrics(), objective=objective)


def dlmi_paper() -> DLMIConfig:
    """The paper's DLMI: GS, decoupled learnable tau0=100, teacher forcing, Adam lr 0.1, B=8, 2048 steps."""
    return DLMIConfig()


def dlmi_paper_free() -> DLMIConfig:
    """`dlmi-paper` without teacher forcing: free-running rollout with hard greedy feedback."""
    return replace(dlmi_paper(), teacher_forcing=False)


def dlmi_demo() -> DLMIConfig:
    """Straight-through DLMI at a fixed tau = 1 that scores every hard sample: each is a discrete prompt.

    The temperature is fixed because learnt temperatures collapse on short targets (tau -> 0.12 within
    250 steps), after which every sample is the same prompt and the search stalls (docs/benchmarks.md §2).
    """
    return replace(
        dlmi_paper(), temperature=1.0, learnable_temperature=False, decouple_learnable_temperature=False,
        stgs_hard=True, score_hard_samples=True, eval_every=1,
    )
