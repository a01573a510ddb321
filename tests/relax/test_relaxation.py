import math

import pytest
import torch

from softtoken.relax import HiddenStateTemperature, Temperature, gumbel_noise, relax
from softtoken.relax.gumbel import TRUNCATED_UPPER
from softtoken.relax.relaxation import TemperedSoftmax


def test_soft_relaxation_gradient_matches_finite_differences():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 2, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    noise = gumbel_noise((1, 2, 5), generator=generator).double()
    weights = torch.randn(1, 2, 5, dtype=torch.float64, generator=generator)

    def objective(z, tau):
        scores = (z + noise) / tau
        return (torch.softmax(scores, -1) * weights).sum()

    tau = torch.tensor([[[0.7], [1.3]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(objective, (logits, tau))
    # relax() runs in float32; its gradient agrees with the float64 reference.
    z32 = logits.detach().float().requires_grad_(True)
    (relax(z32, tau.detach().float(), noise=noise.float()) * weights.float()).sum().backward()
    z64 = logits.detach().clone().requires_grad_(True)
    objective(z64, tau.detach()).backward()
    torch.testing.assert_close(z32.grad.double(), z64.grad, rtol=1e-4, atol=1e-6)


def test_fused_tempered_softmax_gradients_match_finite_differences():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    noise = gumbel_noise((4, 3, 6), generator=generator).double()
    tau = torch.tensor([[[0.7], [1.3], [2.0]]], dtype=torch.float64, requires_grad=True)  # one per position

    def fused(z, t):  # 4 noisy samples of one logit matrix, as a DLMI step draws them
        return TemperedSoftmax.apply(z.expand(4, -1, -1), t, noise, 0.5)

    assert torch.autograd.gradcheck(fused, (logits, tau))
    reference = torch.softmax((logits.expand(4, -1, -1) + 0.5 * noise) / tau, -1)
    torch.testing.assert_close(fused(logits, tau), reference, rtol=0, atol=1e-15)


def test_forbidden_tokens_give_zero_probability_and_finite_temperature_gradient():
    logits = torch.randn(2, 3, 5).masked_fill(torch.tensor([False, True, False, False, True]), float("-inf"))
    logits.requires_grad_(True)
    tau = torch.full((1, 3, 1), 0.8, requires_grad=True)
    probs = relax(logits, tau, noise=gumbel_noise((2, 3, 5), generator=torch.Generator().manual_seed(0)))
    (probs * torch.randn(2, 3, 5)).sum().backward()
    assert torch.equal(probs[..., [1, 4]], torch.zeros(2, 3, 2))
    assert torch.isfinite(tau.grad).all() and tau.grad.abs().sum() > 0
    assert torch.equal(logits.grad[..., [1, 4]], torch.zeros(2, 3, 2))


def test_straight_through_forward_is_exactly_one_hot_with_soft_gradient():
    logits = torch.randn(3, 4, 7, requires_grad=True)
    hard = relax(logits, 0.5, hard=True)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(logits.argmax(-1), 7).float())
    weights = torch.randn(3, 4, 7)
    (hard * weights).sum().backward()
    soft_logits = logits.detach().clone().requires_grad_(True)
    (relax(soft_logits, 0.5) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, soft_logits.grad)


def test_categorical_hard_method_is_seeded_and_one_hot():
    logits = torch.zeros(2, 3, 50)
    first = relax(logits, 1.0, hard=True, hard_method="categorical", generator=torch.Generator().manual_seed(1))
    again = relax(logits, 1.0, hard=True, hard_method="categorical", generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    assert torch.equal(first.sum(-1), torch.ones(2, 3))
    with pytest.raises(ValueError, match="nearest"):
        relax(logits, 1.0, hard=True, hard_method="nearest")


def test_truncated_gumbel_is_bounded_like_the_reference():
    noise = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(0), kind="truncated")
    assert noise.max() <= -math.log(-math.log(TRUNCATED_UPPER)) + 1e-4
    standard = gumbel_noise((200_000,), generator=torch.Generator().manual_seed(0), kind="standard")
    assert standard.max() > noise.max()
    assert abs(standard.mean().item() - 0.5772) < 0.01  # Euler-Mascheroni constant
    with pytest.raises(ValueError, match="weird"):
        gumbel_noise((2,), kind="weird")


def test_temperature_values_at_init():
    generator = torch.Generator().manual_seed(0)
    tau = Temperature(100.0, learnable=True, num=6, generator=generator)()
    assert tau.shape == (6,)
    assert torch.all(tau >= 100.0) and torch.all(tau < 100.0 * (1 + math.tanh(1.0)))
    assert torch.allclose(Temperature(100.0, learnable=True, num=3, theta_init="zero")(), torch.full((3,), 100.0))
    fixed = Temperature(2.5)
    assert torch.equal(fixed(), torch.tensor([2.5])) and not list(fixed.parameters())
    with pytest.raises(ValueError, match="-1"):
        Temperature(-1.0)


def test_hidden_state_temperature_only_rises_above_tau0():
    module = HiddenStateTemperature(10.0, hidden_size=8, num=3)
    tau = module(torch.randn(5, 8) * 10)
    assert tau.shape == (5, 3)
    assert torch.all(tau >= 10.0) and torch.all(tau <= 20.0)
