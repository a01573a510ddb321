import torch
import torch.nn.functional as F

from softtoken.engine.relaxation import blend


def logits_and_weights():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 5, generator=generator), torch.randn(2, 3, 5, generator=generator)


def grad_of(logits, weights, **kwargs):
    leaf = logits.clone().requires_grad_(True)
    probs = blend(leaf, **kwargs)
    (probs * weights).sum().backward()
    return probs.detach(), leaf.grad


def test_blend_forward_mixes_one_hot_and_softmax_and_scales_gradient():
    logits, weights = logits_and_weights()
    probs, grad = grad_of(logits, weights, temperature=0.5, soft=0.5, hard=0.25)
    soft_probs = torch.softmax(logits / 0.5, -1)
    one_hot = F.one_hot(logits.argmax(-1), 5).float()
    expected = 0.75 * (0.5 * one_hot + 0.5 * soft_probs) + 0.25 * one_hot
    torch.testing.assert_close(probs, expected)
    _, softmax_grad = grad_of(logits, weights, temperature=0.5, soft=1.0, hard=0.0)
    torch.testing.assert_close(grad, (0.75 * 0.5 + 0.25) * softmax_grad)


def test_blend_with_soft_and_hard_zero_is_one_hot_with_zero_gradient():
    logits, weights = logits_and_weights()
    probs, grad = grad_of(logits, weights, temperature=1.0, soft=0.0, hard=0.0)
    assert torch.equal(probs, F.one_hot(logits.argmax(-1), 5).float())
    assert torch.equal(grad, torch.zeros_like(grad))


def test_blend_fully_hard_is_exact_one_hot_with_softmax_gradient():
    logits, weights = logits_and_weights()
    probs, grad = grad_of(logits, weights, temperature=2.0, soft=1.0, hard=1.0)
    assert torch.equal(probs, F.one_hot(logits.argmax(-1), 5).float())
    _, softmax_grad = grad_of(logits, weights, temperature=2.0, soft=1.0, hard=0.0)
    torch.testing.assert_close(grad, softmax_grad)


def test_blend_fixed_rows_feed_their_argmax_token_and_get_no_gradient():
    logits, weights = logits_and_weights()
    fixed = torch.tensor([False, True, False])
    probs, grad = grad_of(logits, weights, temperature=1.0, soft=1.0, hard=0.0, fixed=fixed)
    assert torch.equal(probs[:, 1], F.one_hot(logits[:, 1].argmax(-1), 5).float())
    assert torch.equal(grad[:, 1], torch.zeros(2, 5))
    assert grad[:, 0].abs().sum() > 0


def test_blend_gives_forbidden_tokens_zero_probability_and_gradient():
    logits, weights = logits_and_weights()
    forbidden = torch.zeros(5, dtype=torch.bool)
    forbidden[logits[0, 0].argmax()] = True
    probs, grad = grad_of(logits, weights, temperature=1.0, soft=0.5, hard=0.5, forbidden=forbidden)
    assert torch.equal(probs[..., forbidden], torch.zeros(2, 3, 1))
    assert torch.equal(grad[..., forbidden], torch.zeros(2, 3, 1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 3))


def test_blend_fully_soft_is_exactly_the_tempered_softmax():
    logits, weights = logits_and_weights()
    probs, grad = grad_of(logits, weights, temperature=0.7, soft=1.0, hard=0.0)
    assert torch.equal(probs, torch.softmax(logits / torch.tensor(0.7), -1))
    leaf = logits.clone().requires_grad_(True)
    (torch.softmax(leaf / 0.7, -1) * weights).sum().backward()
    torch.testing.assert_close(grad, leaf.grad)
