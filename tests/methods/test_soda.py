import pytest
import torch

from softtoken.methods import Budget, Problem, Soda, SodaConfig
from softtoken.methods import soda as soda_module
from softtoken.methods.soda import SodaAdam, margin_loss


def test_soda_adam_with_bias_correction_matches_torch_adam():
    generator = torch.Generator().manual_seed(0)
    ours = torch.randn(3, 5, generator=generator).requires_grad_(True)
    theirs = ours.detach().clone().requires_grad_(True)
    mine = SodaAdam(ours, lr=0.05, betas=(0.9, 0.995), eps=1e-8, bias_correction=True)
    reference = torch.optim.Adam([theirs], lr=0.05, betas=(0.9, 0.995), eps=1e-8)
    for _ in range(5):
        grad = torch.randn(3, 5, generator=generator)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_soda_adam_without_bias_correction_takes_a_small_first_step():
    param = torch.zeros(4, requires_grad=True)
    param.grad = torch.ones(4)
    SodaAdam(param, lr=1.0, betas=(0.9, 0.995), eps=0.0, bias_correction=False).step()
    # m = 0.1, v = 0.005: step = 0.1 / sqrt(0.005), not the bias-corrected 1.0
    assert torch.allclose(param.detach(), torch.full((4,), -0.1 / 0.005**0.5))


def test_margin_loss_is_zero_exactly_when_the_target_is_the_argmax():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]])  # (1, T=2, V=3)
    assert margin_loss(logits, torch.tensor([0, 1])).item() == 0.0
    assert margin_loss(logits, torch.tensor([1, 1])).item() == pytest.approx(0.5)  # (2 - 1) / 2


def test_soda_decays_resets_and_reinits_at_the_configured_steps(tiny_lm, monkeypatch):
    events = []

    class Spy(SodaAdam):
        def step(self):
            before = self.param.detach().clone()
            super().step()
            events.append(("step", self.steps, before))

        def reset(self):
            if hasattr(self, "steps"):  # skip the reset done by __init__
                events.append(("reset", self.steps, self.param.detach().clone()))
            super().reset()

    monkeypatch.setattr(soda_module, "SodaAdam", Spy)
    config = SodaConfig(soda_reset_epoch=3, soda_reinit_epoch=5, soda_decay_rate=0.5, epochs=7, eval_every=100)
    result = Soda(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=2, seed=0), Budget(steps=7))
    assert result.history["reset_step"] == [3, 6] and result.history["reinit_step"] == [5]
    resets = [(count, value) for kind, count, value in events if kind == "reset"]
    assert [count for count, _ in resets] == [3, 3]  # the Adam state had seen 3 steps each time it was deleted
    steps = [(count, before) for kind, count, before in events if kind == "step"]
    assert [count for count, _ in steps] == [1, 2, 3, 1, 2, 3, 1]
    # The step after a reset starts from the decayed parameters the reset saw.
    assert torch.equal(steps[3][1], resets[0][1])
    # Re-init at step 5 draws fresh N(0, 0.1^2) logits: far from the decayed ones, mean ~0.
    assert steps[5][1].std().item() == pytest.approx(0.1, rel=0.3)


def test_soda_decays_the_logits_after_every_step(tiny_lm, monkeypatch):
    after = []

    class Spy(SodaAdam):
        def step(self):
            super().step()
            after.append(self.param.detach().clone())

    monkeypatch.setattr(soda_module, "SodaAdam", Spy)
    config = SodaConfig(soda_decay_rate=0.5, epochs=3, eval_every=100, soda_init_strategy="normal")
    seen = []
    original = soda_module.Soda._schedule

    def spy_schedule(self, step, optimizer, logits_z, generator, history):
        seen.append(logits_z.detach().clone())
        original(self, step, optimizer, logits_z, generator, history)

    monkeypatch.setattr(soda_module.Soda, "_schedule", spy_schedule)
    Soda(config).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2, seed=0), Budget(steps=3))
    for raw, decayed in zip(after, seen, strict=True):
        assert torch.allclose(decayed, 0.5 * raw)


def test_soda_keeps_the_best_prompt_across_reinits(tiny_lm):
    config = SodaConfig(soda_reinit_epoch=2, soda_reset_epoch=2, epochs=8, eval_every=1, learning_rate=0.1)
    result = Soda(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9, 10), prompt_length=2, seed=0), Budget(steps=8))
    assert result.metrics["eval/lcs_ratio"] == max(result.history["eval_lcs_ratio"])
    assert result.history["reinit_step"] == [2, 4, 6, 8][: len(result.history["reinit_step"])]
