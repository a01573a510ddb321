import pytest
import torch

from softtoken.engine.optimizers import UPDATE_RULES, OptimizerConfig, build_update_rule, register_update_rule


def test_sgd_step_is_exact():
    logits, grad = torch.tensor([[[1.0, -2.0]]]), torch.tensor([[[0.5, 4.0]]])
    rule = build_update_rule(OptimizerConfig(kind="sgd"))
    assert torch.equal(rule.step(logits, grad, lr=0.25, step=1), torch.tensor([[[0.875, -3.0]]]))


def test_adam_first_step_is_lr_times_g_over_abs_g_plus_eps():
    logits = torch.zeros(1, 1, 3, dtype=torch.float64)
    grad = torch.tensor([[[2.0, -0.5, 0.0]]], dtype=torch.float64)
    rule = build_update_rule(OptimizerConfig(kind="adam", eps=1e-3))
    updated = rule.step(logits, grad, lr=0.1, step=1)
    expected = -0.1 * grad / (grad.abs() + 1e-3)
    torch.testing.assert_close(updated, expected, rtol=1e-12, atol=1e-15)


def test_adam_second_step_matches_bias_corrected_moments():
    config = OptimizerConfig(kind="adam", beta1=0.5, beta2=0.75, eps=1e-8)
    rule = build_update_rule(config)
    z = rule.step(torch.zeros(1, 1, 1, dtype=torch.float64), torch.full((1, 1, 1), 1.0, dtype=torch.float64), 1.0, 1)
    z = rule.step(z, torch.full((1, 1, 1), 3.0, dtype=torch.float64), 1.0, 2)
    m_hat = (0.5 * 0.5 * 1.0 + 0.5 * 3.0) / (1 - 0.25)  # 2.333...
    v_hat = (0.75 * 0.25 * 1.0 + 0.25 * 9.0) / (1 - 0.5625)  # 5.571...
    expected = -1.0 / (1.0 + 1e-8) - m_hat / (v_hat**0.5 + 1e-8)
    assert z.item() == pytest.approx(expected, rel=1e-12)


def test_adam_state_is_independent_per_trajectory():
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 2, 4, generator=generator, dtype=torch.float64) for _ in range(3)]
    lr = 0.2
    batched_rule = build_update_rule(OptimizerConfig(kind="adam"))
    z = torch.zeros(3, 2, 4, dtype=torch.float64)
    for step, grad in enumerate(grads, start=1):
        z = batched_rule.step(z, grad, lr, step)
    for b in range(3):
        single_rule, single = build_update_rule(OptimizerConfig(kind="adam")), torch.zeros(1, 2, 4, dtype=torch.float64)
        for step, grad in enumerate(grads, start=1):
            single = single_rule.step(single, grad[b : b + 1], lr, step)
        torch.testing.assert_close(z[b : b + 1], single)


def test_adam_rejects_step_zero():
    with pytest.raises(ValueError, match="step must be >= 1"):
        build_update_rule(OptimizerConfig(kind="adam")).step(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), 0.1, 0)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("kind", "rmsprop", r"OptimizerConfig.kind must be one of \['adam', 'sgd'\], got 'rmsprop'"),
        ("beta1", 1.0, r"OptimizerConfig.beta1 must be in \[0, 1\), got 1.0"),
        ("beta2", -0.1, r"OptimizerConfig.beta2 must be in \[0, 1\), got -0.1"),
        ("eps", 0.0, "OptimizerConfig.eps must be > 0, got 0.0"),
    ],
)
def test_optimizer_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        OptimizerConfig(**{field: value})


def test_update_rule_registry_rejects_duplicates():
    assert sorted(UPDATE_RULES) == ["adam", "sgd"]
    with pytest.raises(ValueError, match="already registered"):
        register_update_rule("sgd")(UPDATE_RULES["sgd"])
