import dataclasses

import pytest
import torch

from softtoken.methods import Budget, Problem, Reinforce, ReinforceConfig, reinforce_paper

FAST = ReinforceConfig(batch_size=4, learning_rate=0.3, eval_every=2)


def _run(config, steps=6, seed=0, tiny_lm=None):
    return Reinforce(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9, 10), prompt_length=3, seed=seed),
                                 Budget(steps=steps))


@pytest.mark.parametrize("options", [{}, {"reinforce_estimator": "batch", "reinforce_baseline": "ema"}])
def test_reinforce_variance_diagnostic_does_not_change_the_trajectory(tiny_lm, options):
    plain = dataclasses.replace(FAST, **options)
    measured = dataclasses.replace(plain, reinforce_grad_variance_samples=3, reinforce_grad_variance_period=2)
    without, with_diag = _run(plain, steps=4, tiny_lm=tiny_lm), _run(measured, steps=4, tiny_lm=tiny_lm)
    assert without.history["loss/target"] == with_diag.history["loss/target"]
    assert without.prompt_ids == with_diag.prompt_ids
    assert with_diag.history["diag/step"] == [2, 4]
    variance = with_diag.history["diag/reinforce_grad_variance_max"]
    assert len(variance) == 2 and all(v >= 0 for v in variance)
    assert with_diag.history["diag/reinforce_grad_variance_samples"] == [3.0, 3.0]
    assert with_diag.forward_tokens == without.forward_tokens + 2 * 2 * 4 * (3 + 4 - 1)


def test_reinforce_never_backpropagates_through_the_model(tiny_lm):
    result = _run(FAST, steps=3, tiny_lm=tiny_lm)
    evaluations = result.history["eval/final"].count(False)  # the final entry re-reports a judged prompt
    assert result.backward_tokens == 0
    assert result.forward_tokens == (3 + 4 - 1) * (3 * 4 + evaluations)


def test_reinforce_paper_first_step_leaves_the_logits_unchanged(tiny_lm, monkeypatch):
    grads = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        grads.append(self.param_groups[0]["params"][0].grad.clone())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    _run(dataclasses.replace(reinforce_paper(), batch_size=4, eval_every=10), steps=3, tiny_lm=tiny_lm)
    assert torch.count_nonzero(grads[0]) == 0 and torch.count_nonzero(grads[1]) > 0


def test_reinforce_rejects_leave_one_out_with_a_single_sample():
    with pytest.raises(ValueError, match="leave-one-out"):
        ReinforceConfig(batch_size=1)
    assert ReinforceConfig(batch_size=1, reinforce_baseline="ema").batch_size == 1
