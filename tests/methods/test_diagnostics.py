import pytest
import torch

from softtoken.methods.diagnostics import (
    ScoreFunction,
    Welford,
    estimate_gradient_bias,
    estimate_gradient_variance,
    sample_indices,
)


def test_welford_matches_batch_mean_and_unbiased_variance():
    samples = torch.randn(7, 3, 4, generator=torch.Generator().manual_seed(0))
    moments = Welford()
    for sample in samples:
        moments.add(sample)
    assert torch.allclose(moments.mean, samples.double().mean(0))
    assert torch.allclose(moments.variance(), samples.double().var(0, unbiased=True))


def test_welford_variance_needs_two_samples():
    moments = Welford()
    moments.add(torch.zeros(2))
    with pytest.raises(ValueError, match=">= 2"):
        moments.variance()


def test_variance_diagnostic_returns_the_analytic_variance_of_a_known_distribution():
    generator = torch.Generator().manual_seed(1)
    std = torch.tensor([[0.5, 1.0, 2.0]])  # per-element variances 0.25, 1, 4

    def sample():
        return 3.0 + std * torch.randn(std.shape, generator=generator)

    stats = estimate_gradient_variance(sample, 4000, prefix="diag/x")
    analytic = std.double() ** 2
    assert stats["diag/x_variance_mean"] == pytest.approx(analytic.mean().item(), rel=0.05)
    assert stats["diag/x_variance_max"] == pytest.approx(4.0, rel=0.06)
    assert stats["diag/x_variance_norm"] == pytest.approx(analytic.norm().item(), rel=0.06)
    assert stats["diag/x_mean_norm"] == pytest.approx(3.0 * 3**0.5, rel=0.02)
    assert stats["diag/x_variance_samples"] == 4000


def test_variance_diagnostic_counts_the_given_first_sample():
    calls = []
    stats = estimate_gradient_variance(lambda: calls.append(1) or torch.ones(2), 3, first=torch.zeros(2))
    assert len(calls) == 2 and stats["diag/grad_variance_samples"] == 3
    with pytest.raises(ValueError, match="n >= 2"):
        estimate_gradient_variance(lambda: torch.ones(1), 1)


def test_bias_diagnostic_is_the_difference_of_the_two_means():
    generator = torch.Generator().manual_seed(2)

    def around(center):
        return lambda: center + 0.1 * torch.randn(3, generator=generator)

    stats = estimate_gradient_bias(around(torch.tensor([1.0, 0.0, -1.0])), around(torch.zeros(3)), 500, 500)
    assert stats["diag/stgs_grad_bias_abs_max"] == pytest.approx(1.0, abs=0.03)
    assert stats["diag/stgs_grad_bias_mean"] == pytest.approx(0.0, abs=0.03)
    assert stats["diag/stgs_grad_bias_reference_grad_variance_mean"] == pytest.approx(0.01, rel=0.2)
    assert stats["diag/stgs_grad_bias_samples"] == 500 and stats["diag/stgs_grad_bias_reference_samples"] == 500


def _toy_problem():
    """Z (L=2, V=4) and an additive loss f(x) = c[0, x0] + c[1, x1] with an analytic expected-loss gradient."""
    z = torch.tensor([[0.3, -0.2, 1.0, 0.0], [-1.0, 0.5, 0.2, 0.1]], requires_grad=True)
    cost = torch.tensor([[1.0, 3.0, -2.0, 0.5], [0.0, 2.0, 1.0, -1.0]])
    probs = torch.softmax(z.detach(), -1)
    analytic = probs * (cost - (probs * cost).sum(-1, keepdim=True))  # d/dZ sum_l E_p[c_l]
    return z, cost, analytic


@pytest.mark.parametrize("baseline, use_baseline, fixed",
                         [("loo", True, None), ("ema", True, 2.5), ("ema", False, None)])
def test_per_sample_reinforce_is_unbiased_on_a_toy_objective(baseline, use_baseline, fixed):
    z, cost, analytic = _toy_problem()
    score = ScoreFunction(estimator="per_sample", baseline=baseline, use_baseline=use_baseline)
    score.value = fixed  # an EMA baseline is a constant w.r.t. the current samples
    runs, batch = 4000, 8
    indices = sample_indices(z, runs * batch, torch.Generator().manual_seed(3)).view(runs, batch, 2)  # (R, B, L)
    losses = cost[torch.arange(2), indices].sum(-1)  # (R, B)
    copies = z.detach().expand(runs, -1, -1).clone().requires_grad_(True)  # one Z per run: per-run gradients
    grads = runs * torch.autograd.grad(score.surrogate(copies, indices, losses, update=False), copies)[0]
    mean, stderr = grads.double().mean(0), grads.double().std(0) / runs**0.5
    assert ((mean - analytic.double()).abs() <= 5 * stderr + 1e-4).all(), (mean, analytic)


def test_batch_reinforce_first_gradient_is_zero_and_later_advantages_are_shrunk():
    score = ScoreFunction(estimator="batch", baseline_beta=0.9)
    first = score.advantages(torch.tensor([1.0, 3.0]))
    assert torch.equal(first, torch.zeros(2))  # baseline set to the first loss before use
    second = score.advantages(torch.tensor([4.0, 6.0]))
    assert torch.allclose(second, torch.full((2,), 0.1 * (5.0 - 2.0)))  # (1 - beta)(L - b_old), shared


def test_leave_one_out_baseline_excludes_each_sample():
    score = ScoreFunction(estimator="per_sample", baseline="loo")
    advantages = score.advantages(torch.tensor([1.0, 2.0, 6.0]))
    assert torch.allclose(advantages, torch.tensor([1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5]))


def test_score_function_rejects_unknown_estimators():
    with pytest.raises(ValueError, match="estimator"):
        ScoreFunction(estimator="vimco")
    with pytest.raises(ValueError, match="baseline"):
        ScoreFunction(baseline="critic")
