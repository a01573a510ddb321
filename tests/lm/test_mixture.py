import pytest
import torch

from softtoken.lm import mixture
from softtoken.lm.mixture import SPARSE_MAX_WIDTH, mix


def sparse_rows(shape: tuple[int, ...], width: int, seed: int = 0) -> torch.Tensor:
    """Simplex rows with exactly `width` nonzero entries each (ADC's projected rows)."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(shape, generator=generator)
    values, index = scores.topk(width, dim=-1)
    rows = torch.zeros(shape).scatter_(-1, index, values)
    return rows / rows.sum(-1, keepdim=True)


def values_and_gradient(probs: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor,
                        function) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = probs.clone().requires_grad_(True)
    out = function(leaf, rows)
    (out * weights).sum().backward()
    return out.detach(), leaf.grad


@pytest.mark.parametrize("width", [1, 3, SPARSE_MAX_WIDTH])
def test_sparse_rows_give_the_dense_product_and_its_dense_gradient(width, monkeypatch):
    rows = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    probs = sparse_rows((2, 5, 300), width)
    weights = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(2))
    gathered, gather = [], mixture._SparseMixture.apply
    monkeypatch.setattr(mixture._SparseMixture, "apply", lambda *a: gathered.append(a[2]) or gather(*a))
    out, grad = values_and_gradient(probs, rows, weights, mix)
    dense_out, dense_grad = values_and_gradient(probs, rows, weights, lambda p, r: p @ r)
    assert gathered == [width]
    torch.testing.assert_close(out, dense_out, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grad, dense_grad, atol=1e-6, rtol=1e-5)
    assert (grad != 0).all()  # every entry gets its gradient, not only the row's tokens


def test_negative_entries_are_gathered_too():
    rows = torch.randn(40, 4, generator=torch.Generator().manual_seed(6))
    weights = torch.zeros(2, 40)
    weights[0, [3, 9]] = torch.tensor([0.5, -0.25])
    weights[1, 17] = 1.0
    torch.testing.assert_close(mix(weights, rows), weights @ rows)


def test_one_hot_rows_read_exactly_their_token_rows():
    rows = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([[7, 0, 49], [3, 3, 12]])
    out = mix(torch.nn.functional.one_hot(ids, 50).float(), rows)
    assert torch.equal(out, rows[ids])


def test_wide_rows_and_trained_rows_take_the_dense_product(monkeypatch):
    monkeypatch.setattr(mixture._SparseMixture, "apply", lambda *a: pytest.fail("gathered"))
    rows = torch.randn(300, 8, generator=torch.Generator().manual_seed(4))
    wide = sparse_rows((3, 300), SPARSE_MAX_WIDTH + 1)
    torch.testing.assert_close(mix(wide, rows), wide @ rows)
    narrow = sparse_rows((3, 300), 2)
    trained = rows.clone().requires_grad_(True)
    mix(narrow, trained).sum().backward()
    torch.testing.assert_close(trained.grad, narrow.sum(0)[:, None].expand(300, 8))


def test_low_precision_rows_give_their_dtype_and_a_float32_gradient():
    rows = torch.randn(300, 8, generator=torch.Generator().manual_seed(5))
    probs = sparse_rows((2, 3, 300), 4).requires_grad_(True)
    out = mix(probs, rows.bfloat16())
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and probs.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), (probs @ rows).detach(), atol=0.05, rtol=0.02)
    torch.testing.assert_close(probs.grad, rows.sum(-1).expand(2, 3, 300), atol=0.05, rtol=0.02)
