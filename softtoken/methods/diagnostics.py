"""Gradient diagnostics and the score-function (REINFORCE) estimator they and the REINFORCE method share.

Diagnostics follow dlmi-reference.md §6.2-6.4: draw N gradient samples of the prompt logits Z through a
closure, accumulate them with Welford's online algorithm and summarise the per-element (unbiased) variance
by its mean, max and L2 norm. They never touch `Z.grad` and should draw from their own generator, so a
run's trajectory is the same with and without them. The score-function pieces live here rather than in
`reinforce.py` because the STGS "bias" diagnostic needs a REINFORCE reference gradient and methods never
import each other.

    sample = lambda: torch.autograd.grad(stgs_loss(diag_generator), z)[0]  # fresh Gumbel draws each call
    stats = estimate_gradient_variance(sample, n=5, prefix="diag/stgs_grad", first=z.grad)
    reference = reinforce_reference_sampler(lm, z, target, diag_generator, batch=8)
    stats |= estimate_gradient_bias(sample, reference, n=5, m=5)  # or pass samples=gradient_moments(...)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from softtoken.lm.softlm import SoftLM
from softtoken.objectives import FreeRunningTargetCE, ObjectiveContext

ESTIMATORS = ("batch", "per_sample")
BASELINES = ("ema", "loo")

GradientSampler = Callable[[], torch.Tensor]


class Welford:
    """Online per-element mean and unbiased variance of equally shaped tensors (float64)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None

    def add(self, sample: torch.Tensor) -> None:
        x = sample.detach().double()
        self.count += 1
        if self.mean is None:
            self.mean, self._m2 = x.clone(), torch.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)

    def variance(self) -> torch.Tensor:
        if self.count < 2:
            raise ValueError(f"Welford.variance needs >= 2 samples, got {self.count}")
        return self._m2 / (self.count - 1)


def gradient_moments(sample_grad: GradientSampler, n: int, *, into: Welford | None = None) -> Welford:
    """Add samples from `sample_grad` until `into` (a fresh Welford if None) holds `n` of them."""
    moments = into or Welford()
    while moments.count < n:
        moments.add(sample_grad())
    return moments


def variance_summary(moments: Welford, prefix: str) -> dict[str, float]:
    """Mean, max and norm of the per-element variance, plus the mean gradient's norm (reference key names)."""
    variance = moments.variance()
    return {
        f"{prefix}_variance_mean": variance.mean().item(),
        f"{prefix}_variance_max": variance.max().item(),
        f"{prefix}_variance_norm": variance.norm().item(),
        f"{prefix}_mean_norm": moments.mean.norm().item(),
        f"{prefix}_variance_samples": float(moments.count),
    }


def estimate_gradient_variance(
    sample_grad: GradientSampler, n: int, *, prefix: str = "diag/grad", first: torch.Tensor | None = None
) -> dict[str, float]:
    """Variance of the gradient estimator behind `sample_grad` over `n` >= 2 samples.

    `first`: an already computed sample (the step's training gradient, as the reference reuses it).
    """
    if n < 2:
        raise ValueError(f"gradient variance needs n >= 2 samples, got {n}")
    moments = Welford()
    if first is not None:
        moments.add(first)
    return variance_summary(gradient_moments(sample_grad, n, into=moments), prefix)


def estimate_gradient_bias(
    sample_grad: GradientSampler,
    reference_grad: GradientSampler,
    n: int,
    m: int,
    *,
    prefix: str = "diag/stgs_grad_bias",
    samples: Welford | None = None,
) -> dict[str, float]:
    """Mean of `n` samples of `sample_grad` minus the mean of `m` samples of `reference_grad`.

    This is a *difference between two estimators*, not a bias in the statistical sense: with STGS as
    `sample_grad` and REINFORCE as the reference, the two differentiate different objectives (relaxed
    soft-input loss vs. expected discrete-input loss; teacher-forced vs. free-running if TF is on), and
    the reference's own noise (and, with the reference's batch advantage, its shrinkage) enters the
    difference. `samples`: moments already collected (e.g. by the variance diagnostic), topped up to n.
    """
    if n < 1 or m < 1:
        raise ValueError(f"gradient bias needs n >= 1 and m >= 1 samples, got n={n}, m={m}")
    ours = gradient_moments(sample_grad, n, into=samples)
    reference = gradient_moments(reference_grad, m)
    bias = ours.mean - reference.mean
    stats = {
        f"{prefix}_norm": bias.norm().item(),
        f"{prefix}_mean": bias.mean().item(),
        f"{prefix}_abs_mean": bias.abs().mean().item(),
        f"{prefix}_abs_max": bias.abs().max().item(),
        f"{prefix}_samples": float(ours.count),
        f"{prefix}_reference_samples": float(reference.count),
        f"{prefix}_reference_grad_mean_norm": reference.mean.norm().item(),
    }
    if reference.count >= 2:
        variance = reference.variance()
        stats[f"{prefix}_reference_grad_variance_norm"] = variance.norm().item()
        stats[f"{prefix}_reference_grad_variance_mean"] = variance.mean().item()
        stats[f"{prefix}_reference_grad_variance_max"] = variance.max().item()
    return stats


# ----------------------------------------------------------------- score-function estimator
def sample_indices(logits_z: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Draw `batch` prompts x ~ softmax(Z) (no temperature): logits (L, V) -> indices (B, L)."""
    probs = torch.softmax(logits_z.detach().float(), dim=-1)  # (L, V)
    return torch.multinomial(probs, batch, replacement=True, generator=generator).T  # (B, L)


def sequence_log_prob(logits_z: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """sum_l log softmax(Z)[l, x_l] for logits (..., L, V) and indices (..., B, L) -> (..., B)."""
    log_probs = torch.log_softmax(logits_z.float(), dim=-1)  # (..., L, V)
    return log_probs.gather(-1, indices.transpose(-1, -2)).sum(-2)  # (..., L, B) -> (..., B)


class ScoreFunction:
    """REINFORCE surrogate: its gradient w.r.t. Z estimates d/dZ E_{x~softmax(Z)}[loss(x)].

    estimator "batch" is the DLMI reference (§6.1): one scalar advantage A = mean loss - b for the whole
    batch, b <- (1-beta) b + beta L with beta weighing the *new* loss, updated before use (first A = 0).
    estimator "per_sample" is the textbook one: A_b = loss_b - b with b an EMA of past batch means
    (b <- beta b + (1-beta) L, updated after use; 0 before the first update) or the leave-one-out mean.
    """

    def __init__(self, *, estimator: str = "per_sample", use_baseline: bool = True, baseline_beta: float = 0.9,
                 baseline: str = "ema", reward_scale: float = 1.0) -> None:
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        self.estimator, self.use_baseline, self.beta = estimator, use_baseline, baseline_beta
        self.baseline, self.reward_scale = baseline, reward_scale
        self.value: float | None = None  # running baseline

    def advantages(self, losses: torch.Tensor, *, update: bool = True) -> torch.Tensor:
        """Per-sample advantages (..., B) of losses (..., B); reward = -loss, so descending favours low loss.

        Leading dimensions are independent batches only for the stateless choices (no baseline, loo).
        """
        losses = losses.detach()
        if not self.use_baseline:
            return losses.mean().expand_as(losses) if self.estimator == "batch" else losses
        if self.estimator == "batch":
            return self._batch_advantage(losses.mean().item(), update) * torch.ones_like(losses)
        if self.baseline == "loo":
            return losses - (losses.sum(-1, keepdim=True) - losses) / (losses.shape[-1] - 1)
        advantage = losses - (self.value or 0.0)
        if update:
            mean = losses.mean().item()
            self.value = mean if self.value is None else self.beta * self.value + (1 - self.beta) * mean
        return advantage

    def _batch_advantage(self, loss: float, update: bool) -> float:
        if update:  # the reference's inverted EMA, applied before the advantage is taken
            self.value = loss if self.value is None else (1 - self.beta) * self.value + self.beta * loss
        return loss - (self.value or 0.0)

    def surrogate(self, logits_z: torch.Tensor, indices: torch.Tensor, losses: torch.Tensor, *,
                  update: bool = True) -> torch.Tensor:
        """reward_scale * mean_b A_b log pi(x_b); logits (L, V), indices (B, L), losses (B,) -> scalar."""
        advantages = self.advantages(losses, update=update)
        return self.reward_scale * (advantages * sequence_log_prob(logits_z, indices)).mean()


@torch.no_grad()
def rollout_losses(lm: SoftLM, indices: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Discrete prompts (B, L), rolled out greedily -> (per-sample mean target CE (B,), greedy outputs (B, T))."""
    context = ObjectiveContext(target_ids=tuple(target.tolist()))
    return FreeRunningTargetCE().hard_loss_and_predictions(lm, indices, context)


def reinforce_reference_sampler(
    lm: SoftLM, logits_z: torch.Tensor, target: torch.Tensor, generator: torch.Generator, *, batch: int,
    estimator: str = "batch", use_baseline: bool = True, baseline_beta: float = 0.9, reward_scale: float = 1.0,
) -> GradientSampler:
    """REINFORCE gradients of the free-running discrete loss w.r.t. the leaf `logits_z` (1, L, V).

    A fresh estimator per call, as the reference builds one per bias estimate (§6.3): with the
    default "batch" estimator the first sample is exactly zero and later ones are shrunk by 1-beta.
    """
    score = ScoreFunction(estimator=estimator, use_baseline=use_baseline, baseline_beta=baseline_beta,
                          reward_scale=reward_scale)

    def sample() -> torch.Tensor:
        indices = sample_indices(logits_z[0], batch, generator)
        losses, _ = rollout_losses(lm, indices, target)
        return torch.autograd.grad(score.surrogate(logits_z[0], indices, losses), logits_z)[0]

    return sample
