"""DLMI: language-model inversion through end-to-end differentiation (arXiv 2602.11044).

The prompt is a logit matrix Z (L x V). Each step draws B Gumbel samples of Z, relaxes them with a
(per-position, learnable) temperature into distributions over tokens, feeds their mixture of token
embeddings to the frozen model and descends the target cross-entropy, teacher-forced (one forward
pass) or free-running / BPTT. Adam updates Z and the temperatures. The discrete prompt argmax Z is
greedy-decoded every `eval_every` steps; the run stops on an exact match.

    lm = SoftLM(model, tokenizer)
    problem = Problem(lm=lm, target_ids=tuple(lm.encode(" Paris.")), prompt_length=4, seed=0)
    result = DLMI(dlmi_paper()).run(problem, Budget(seconds=60))
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

from softtoken.lm.evaluation import PromptScore, evaluate_prompts, roundtrip_exact
from softtoken.lm.softlm import SoftLM
from softtoken.methods.base import (
    Budget,
    Clock,
    NonFiniteLossError,
    NullTracker,
    Problem,
    Result,
    Tracker,
    register_method,
)
from softtoken.metrics import lcs_ratio
from softtoken.relax import GUMBEL_KINDS, HARD_METHODS, HiddenStateTemperature, Temperature, gumbel_noise, relax
from softtoken.relax.temperature import THETA_INITS

logger = logging.getLogger(__name__)

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
    eps: float = 1e-10

    def __post_init__(self) -> None:
        positive = ("batch_size", "epochs", "learning_rate", "temperature", "bptt_temperature", "eval_every", "init_std")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"DLMIConfig.{name} must be > 0, got {getattr(self, name)}")
        choices = {
            "stgs_hard_method": HARD_METHODS,
            "gumbel_kind": GUMBEL_KINDS,
            "init_strategy": INIT_STRATEGIES,
            "losses": LOSSES,
            "temperature_theta_init": THETA_INITS,
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
        if self.score_hard_samples and not (self.stgs_hard and self.teacher_forcing):
            raise ValueError("DLMIConfig: score_hard_samples=True needs stgs_hard=True and teacher_forcing=True")
        if self.bptt_hidden_state_conditioning and self.bptt_learnable_temperature:
            raise ValueError("DLMIConfig: bptt_hidden_state_conditioning replaces bptt_learnable_temperature; set one")


def init_logits(config: DLMIConfig, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    """Initial prompt logits Z of `shape`, float32."""
    if config.init_strategy == "zeros":
        return torch.zeros(shape, device=device)
    std = 1.0 if config.init_strategy == "randn" else config.init_std
    return std * torch.randn(shape, generator=generator, device=device)


class RelaxedFeedback(torch.nn.Module):
    """BPTT feedback: the model's own output logits go through a second Gumbel-softmax."""

    def __init__(self, lm: SoftLM, config: DLMIConfig, steps: int, generator: torch.Generator) -> None:
        super().__init__()
        self.lm, self.config, self.generator = lm, config, generator
        num = steps if config.bptt_decouple_learnable_temperature else 1
        if config.bptt_hidden_state_conditioning:
            self.temperature = HiddenStateTemperature(config.bptt_temperature, lm.hidden_size, num=num, eps=config.eps)
            self.temperature.to(lm.device)
        else:
            self.temperature = Temperature(
                config.bptt_temperature, learnable=config.bptt_learnable_temperature, num=num,
                theta_init=config.temperature_theta_init, eps=config.eps, generator=generator, device=lm.device,
            )

    def forward(self, logits: torch.Tensor, step: int, hidden: torch.Tensor | None) -> torch.Tensor:
        if self.config.bptt_hidden_state_conditioning:
            tau = self.temperature(hidden.float())  # (B, n)
        else:
            tau = self.temperature().unsqueeze(0)  # (1, n)
        tau = tau[:, min(step, tau.shape[1] - 1)].unsqueeze(-1)  # (B or 1, 1)
        noise = gumbel_noise(tuple(logits.shape), generator=self.generator, kind=self.config.gumbel_kind,
                             eps=self.config.eps, device=logits.device)
        probs = relax(logits, tau, noise=noise, noise_scale=self.config.gumbel_noise_scale,
                      hard=self.config.bptt_stgs_hard, hard_method=self.config.stgs_hard_method,
                      generator=self.generator)
        return self.lm.relaxed_feedback_embeds(probs)


class BestPrompt:
    """Best discrete prompt seen so far, ordered by PromptScore.key()."""

    def __init__(self) -> None:
        self.score: PromptScore | None = None
        self.step: int = 0

    def offer(self, score: PromptScore, step: int) -> None:
        if self.score is None or score.key() > self.score.key():
            self.score, self.step = score, step


class PromptParameters(torch.nn.Module):
    """Everything Adam updates: the prompt logits Z (1, L, V), their temperatures and the BPTT feedback."""

    def __init__(self, lm: SoftLM, config: DLMIConfig, problem: Problem, generator: torch.Generator) -> None:
        super().__init__()
        self.config, self.generator = config, generator
        shape = (1, problem.prompt_length, lm.prompt_vocab_size)
        self.logits = torch.nn.Parameter(init_logits(config, shape, generator, lm.device))
        self.temperature = Temperature(
            config.temperature, learnable=config.learnable_temperature,
            num=problem.prompt_length if config.decouple_learnable_temperature else 1,
            theta_init=config.temperature_theta_init, eps=config.eps, generator=generator, device=lm.device,
        )
        self.feedback = RelaxedFeedback(lm, config, len(problem.target_ids), generator) if config.bptt else None

    def optimizer(self) -> torch.optim.Optimizer:
        """Adam on Z; temperatures (and BPTT ones) optionally at their own learning rate."""
        cfg = self.config
        others = [p for name, p in self.named_parameters() if name != "logits"]
        groups = [{"params": [self.logits]}]
        if others:
            groups.append({"params": others, "lr": cfg.temperature_learning_rate or cfg.learning_rate})
        return torch.optim.Adam(groups, lr=cfg.learning_rate)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """B relaxed Gumbel samples of Z -> (probs (B, L, V), tau (n,))."""
        cfg = self.config
        batch, length, vocab = cfg.batch_size, self.logits.shape[1], self.logits.shape[2]
        noise = gumbel_noise((batch, length, vocab), generator=self.generator, kind=cfg.gumbel_kind,
                             eps=cfg.eps, device=self.logits.device)
        tau = self.temperature()
        probs = relax(self.logits.expand(batch, -1, -1), tau.view(1, -1, 1), noise=noise,
                      noise_scale=cfg.gumbel_noise_scale, hard=cfg.stgs_hard,
                      hard_method=cfg.stgs_hard_method, generator=self.generator)
        return probs, tau


@register_method("dlmi")
class DLMI:
    """Gumbel-softmax inversion with learnable per-position temperatures and Adam on the logits."""

    name = "dlmi"
    config_class = DLMIConfig

    def __init__(self, config: DLMIConfig | None = None) -> None:
        self.config = config or DLMIConfig()

    def _target_logits(self, lm: SoftLM, embeds: torch.Tensor, target: torch.Tensor, feedback) -> torch.Tensor:
        if self.config.teacher_forcing:
            return lm.teacher_forced_logits(embeds, target)
        need_hidden = self.config.bptt_hidden_state_conditioning
        return lm.rollout_logits(embeds, int(target.numel()), feedback, need_hidden=need_hidden)

    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        batch, steps, vocab = logits.shape
        return F.cross_entropy(logits.reshape(-1, vocab), target.repeat(batch))  # mean over B*T

    def _train_step(self, lm: SoftLM, params: PromptParameters, optimizer, target: torch.Tensor, step: int):
        """One Adam step on the mean target CE over B Gumbel samples; returns (probs, tau, logits, loss)."""
        probs, tau = params.sample()
        logits = self._target_logits(lm, lm.embed_probs(probs), target, params.feedback)
        loss = self._loss(logits, target)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"DLMI loss is {loss.item()} at step {step}; lower learning_rate or check dtype")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return probs.detach(), tau.detach(), logits.detach(), loss.item()

    def run(self, problem: Problem, budget: Budget | None = None, tracker: Tracker | None = None) -> Result:
        """Optimise Z until exact match, the step budget or the time budget; return the best discrete prompt."""
        cfg, lm, tracker = self.config, problem.lm, tracker or NullTracker()
        budget = budget or Budget()
        clock, total = Clock(budget.seconds), budget.resolve_steps(cfg.epochs)
        generator = torch.Generator(device=lm.device).manual_seed(problem.seed)
        target = torch.tensor(problem.target_ids, device=lm.device)
        params = PromptParameters(lm, cfg, problem, generator)
        optimizer = params.optimizer()
        best, cache, history = BestPrompt(), {}, _empty_history()
        tokens_per_pass = problem.prompt_length + len(problem.target_ids) - 1
        train_tokens = eval_tokens = step = 0
        soft_lcs = 0.0
        while step < total and not clock.expired():
            step += 1
            probs, tau, logits, loss = self._train_step(lm, params, optimizer, target, step)
            train_tokens += cfg.batch_size * tokens_per_pass
            soft_lcs = lcs_ratio(logits[0].argmax(-1).tolist(), problem.target_ids)
            history["loss"].append(loss)
            history["tau_mean"].append(tau.mean().item())
            if cfg.score_hard_samples:
                eval_tokens += self._score_hard_samples(lm, probs, logits, problem, cache, best, step)
            if step % cfg.eval_every == 0 or step == total:
                score = self._evaluate(lm, params.logits, problem, cache)
                eval_tokens += tokens_per_pass
                best.offer(score, step)
                _record_eval(history, step, score, tau, soft_lcs)
                tracker.log(step, {"loss/target_ce": loss, "relax/tau_mean": tau.mean().item(),
                                   "eval/lcs_ratio": score.lcs_ratio, "eval/best_lcs_ratio": best.score.lcs_ratio})
            if best.score is not None and best.score.exact_match:
                break
        if best.score is None or (history["eval_step"] and history["eval_step"][-1] != step):
            best.offer(self._evaluate(lm, params.logits, problem, cache), step)
        return self._result(problem, best, step, clock.elapsed(), (train_tokens + eval_tokens, train_tokens),
                            history, soft_lcs)

    @torch.no_grad()
    def _evaluate(self, lm: SoftLM, logits_z: torch.Tensor, problem: Problem, cache: dict) -> PromptScore:
        return _score_prompt(lm, lm.to_model_ids(logits_z[0].argmax(-1)), problem, cache)

    @torch.no_grad()
    def _score_hard_samples(self, lm: SoftLM, probs: torch.Tensor, logits: torch.Tensor, problem: Problem,
                            cache: dict, best: BestPrompt, step: int) -> int:
        """Confirm hard samples whose teacher-forced argmax is the target; return evaluation tokens spent.

        A straight-through sample *is* a discrete prompt, and for a discrete prompt a teacher-forced
        argmax equal to the target is the same event as a greedy exact match.
        """
        target = torch.tensor(problem.target_ids, device=logits.device)
        hits = (logits.argmax(-1) == target).all(-1).nonzero().flatten().tolist()
        for index in hits:
            best.offer(_score_prompt(lm, lm.to_model_ids(probs[index].argmax(-1)), problem, cache), step)
        return len(hits) * (problem.prompt_length + len(problem.target_ids) - 1)

    def _result(self, problem: Problem, best: BestPrompt, steps: int, wall: float, tokens: tuple[int, int],
                history: dict, soft_lcs: float) -> Result:
        lm, score = problem.lm, best.score
        metrics = {
            "eval/exact_match": score.exact_match,
            "eval/lcs_ratio": score.lcs_ratio,
            "eval/token_accuracy": score.token_accuracy,
            "eval/roundtrip_exact": roundtrip_exact(lm, score.prompt_ids, problem.target_ids),
            "paper/soft_tf_lcs_ratio": soft_lcs,
            "loss/final": history["loss"][-1] if history["loss"] else None,
        }
        return Result(
            method=self.name, config=asdict(self.config), seed=problem.seed,
            target_ids=list(problem.target_ids), target_text=lm.decode(problem.target_ids),
            prompt_ids=list(score.prompt_ids), prompt_text=lm.decode(score.prompt_ids),
            output_ids=list(score.output_ids), output_text=lm.decode(score.output_ids), metrics=metrics,
            success_step=best.step if score.exact_match else None, steps_run=steps, wall_time_s=wall,
            forward_tokens=tokens[0], backward_tokens=tokens[1],
            history=history,
        )


def _score_prompt(lm: SoftLM, prompt_ids: torch.Tensor, problem: Problem, cache: dict) -> PromptScore:
    """Shared-evaluator score of one discrete prompt (L,), cached by its ids."""
    key = tuple(prompt_ids.tolist())
    if key not in cache:
        cache[key] = evaluate_prompts(lm, prompt_ids.unsqueeze(0), problem.target_ids)[0]
    return cache[key]


def _empty_history() -> dict[str, list]:
    return {"loss": [], "tau_mean": [], "eval_step": [], "eval_lcs_ratio": [], "eval_exact_match": [],
            "soft_tf_lcs_ratio": [], "tau": []}


def _record_eval(history: dict, step: int, score: PromptScore, tau: torch.Tensor, soft_lcs: float) -> None:
    history["eval_step"].append(step)
    history["eval_lcs_ratio"].append(score.lcs_ratio)
    history["eval_exact_match"].append(score.exact_match)
    history["soft_tf_lcs_ratio"].append(soft_lcs)
    history["tau"].append([round(float(t), 4) for t in tau])


def dlmi_paper() -> DLMIConfig:
    """The paper's DLMI: GS, decoupled learnable tau0=100, teacher forcing, Adam lr 0.1, B=8, 2048 steps."""
    return DLMIConfig()


def dlmi_paper_free() -> DLMIConfig:
    """`dlmi-paper` without teacher forcing: free-running rollout with hard greedy feedback."""
    return replace(dlmi_paper(), teacher_forcing=False)


def dlmi_demo() -> DLMIConfig:
    """Straight-through DLMI at tau0 = 1 that scores every hard sample: each is a discrete prompt."""
    return replace(
        dlmi_paper(), temperature=1.0, temperature_theta_init="zero", stgs_hard=True,
        score_hard_samples=True, eval_every=1,
    )
