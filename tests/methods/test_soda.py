import pytest
import torch

from softtoken.engine.optimizers import UncorrectedAdam
from softtoken.methods import Budget, Problem, Soda, SodaConfig
from softtoken.methods import soda as soda_module
from softtoken.objectives import target_loss


def test_uncorrected_adam_follows_adam_without_bias_correction():
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(3, 5, generator=generator, dtype=torch.float64).requires_grad_(True)
    expected, m, v = param.detach().clone(), torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5, dtype=torch.float64)
    optimizer = UncorrectedAdam([param], lr=0.05, betas=(0.9, 0.995), eps=1e-8)
    for _ in range(5):
        grad = torch.randn(3, 5, generator=generator, dtype=torch.float64)
        param.grad = grad.clone()
        optimizer.step()
        m, v = 0.9 * m + 0.1 * grad, 0.995 * v + 0.005 * grad**2
        expected -= 0.05 * m / (v.sqrt() + 1e-8)
    torch.testing.assert_close(param.detach(), expected, rtol=1e-10, atol=1e-12)


def test_uncorrected_adam_takes_a_small_first_step_and_restarts_after_a_state_clear():
    param = torch.zeros(4, requires_grad=True)
    optimizer = UncorrectedAdam([param], lr=1.0, betas=(0.9, 0.995), eps=0.0)
    for _ in range(2):
        param.grad = torch.ones(4)
        with torch.no_grad():
            param.zero_()
        optimizer.state.clear()
        optimizer.step()
        # m = 0.1, v = 0.005: step = 0.1 / sqrt(0.005), not the bias-corrected 1.0
        assert torch.allclose(param.detach(), torch.full((4,), -0.1 / 0.005**0.5))


def test_margin_loss_is_zero_exactly_when_the_target_is_the_argmax():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]])  # (1, T=2, V=3)
    assert target_loss(logits, torch.tensor([0, 1]), token_loss="margin").item() == 0.0
    assert target_loss(logits, torch.tensor([1, 1]), token_loss="margin").item() == pytest.approx(0.5)  # (2 - 1) / 2


class SpyAdam(UncorrectedAdam):
    """Records (Adam step count after the step, parameter before it) for every step."""

    events: list = []

    def step(self, closure=None):
        param = self.param_groups[0]["params"][0]
        before = param.detach().clone()
        super().step(closure)
        self.events.append((int(self.state[param]["step"]), before, param.detach().clone()))


def test_soda_decays_resets_and_reinits_at_the_configured_steps(tiny_lm, monkeypatch):
    SpyAdam.events = []
    monkeypatch.setattr(soda_module, "UncorrectedAdam", SpyAdam)
    config = SodaConfig(soda_reset_epoch=3, soda_reinit_epoch=5, soda_decay_rate=0.5, epochs=7, eval_every=100)
    result = Soda(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=2, seed=0), Budget(steps=7))
    assert result.history["search/reset_step"] == [3, 6] and result.history["search/reinit_step"] == [5]
    assert [count for count, _, _ in SpyAdam.events] == [1, 2, 3, 1, 2, 3, 1]  # the state restarts after a reset
    # Every step starts from the decayed parameters of the previous one (reset steps included)...
    for (_, _, after), (_, before, _) in zip(SpyAdam.events[:4], SpyAdam.events[1:5]):
        torch.testing.assert_close(before, 0.5 * after)
    # ...except after the re-init at step 5: fresh N(0, 0.1^2) logits, mean ~0.
    assert SpyAdam.events[5][1].std().item() == pytest.approx(0.1, rel=0.3)


def test_soda_keeps_the_best_prompt_across_reinits(tiny_lm):
    config = SodaConfig(soda_reinit_epoch=2, soda_reset_epoch=2, epochs=8, eval_every=1, learning_rate=0.1)
    result = Soda(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9, 10), prompt_length=2, seed=0), Budget(steps=8))
    assert result.metrics["eval/lcs_ratio"] == max(result.history["eval/lcs_ratio"])
    assert result.history["search/reinit_step"] == [2, 4, 6, 8][: len(result.history["search/reinit_step"])]
