import math

import pytest
import torch

from softtoken.engine.gradients import (
    MERGERS,
    align_norms,
    get_merger,
    min_norm_weights,
    normalize_gradient,
    register_merger,
)


def planar(*vectors: tuple[float, float]) -> torch.Tensor:
    """2-D gradients as K objectives x 1 trajectory x L=1 x V=2."""
    return torch.tensor(vectors, dtype=torch.float64).reshape(len(vectors), 1, 1, 2)


def test_pcgrad_projects_conflicting_pair_against_original_gradients():
    # g1.g2 = -1: c1 = g1 + g2/2 = (0.5, 0.5), c2 = g2 + g1 = (0, 1).
    merged = get_merger("pcgrad").merge(planar((1.0, 0.0), (-1.0, 1.0)))
    torch.testing.assert_close(merged.reshape(2), torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_pcgrad_equals_sum_when_gradients_agree():
    grads = planar((1.0, 2.0), (0.5, 0.1))
    torch.testing.assert_close(get_merger("pcgrad").merge(grads), get_merger("weighted_sum").merge(grads))


def test_pcgrad_uses_fixed_index_order_on_three_gradients():
    grads = planar((1.0, 0.0), (-1.0, 1.0), (0.0, -1.0))
    first = get_merger("pcgrad").merge(grads)
    assert torch.equal(first, get_merger("pcgrad").merge(grads.clone()))
    # c0: vs g1 -> (0.5, 0.5); vs g2 -> (0.5, 0). c1: vs g0 -> (0, 1); vs g2 -> (0, 0).
    # c2: vs g0 (dot 0) unchanged; vs g1 (dot -1) -> (0,-1) + (-1,1)/2 = (-0.5, -0.5).
    torch.testing.assert_close(first.reshape(2), torch.tensor([0.0, -0.5], dtype=torch.float64))


def test_mgda_finds_min_norm_point_of_conflicting_pair():
    # |a g1 + (1-a) g2|^2 = 5a^2 - 6a + 2 is smallest at a = 0.6: the point (0.2, 0.4).
    merged = get_merger("mgda").merge(planar((1.0, 0.0), (-1.0, 1.0)))
    torch.testing.assert_close(merged.reshape(2), torch.tensor([0.2, 0.4], dtype=torch.float64))


def test_mgda_cancels_opposite_and_keeps_equal_gradients():
    opposite = get_merger("mgda").merge(planar((1.0, 2.0), (-1.0, -2.0)))
    torch.testing.assert_close(opposite, torch.zeros_like(opposite))
    equal = get_merger("mgda").merge(planar((1.0, 2.0), (1.0, 2.0)))
    torch.testing.assert_close(equal.reshape(2), torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_mgda_passes_single_gradient_unchanged():
    grads = torch.randn(1, 3, 4, 5)
    assert torch.equal(get_merger("mgda").merge(grads), grads[0])


def test_mgda_weights_are_on_simplex_and_picks_dominated_vertex():
    # g2 = (0.1, 0) lies inside the hull's min-norm region: all weight on it.
    gram = torch.tensor([[[1.0, 0.1], [0.1, 0.01]]], dtype=torch.float64)
    torch.testing.assert_close(min_norm_weights(gram), torch.tensor([[0.0, 1.0]], dtype=torch.float64))


def test_mergers_treat_trajectories_independently():
    generator = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 4, 2, 5, generator=generator, dtype=torch.float64)
    for name in ("pcgrad", "mgda", "weighted_sum"):
        batched = get_merger(name).merge(grads)
        for b in range(4):
            torch.testing.assert_close(batched[b], get_merger(name).merge(grads[:, b : b + 1])[0])


def test_merger_registry_rejects_duplicate_and_unknown_names():
    assert sorted(MERGERS) == ["mgda", "pcgrad", "weighted_sum"]
    with pytest.raises(ValueError, match="already registered"):
        register_merger("pcgrad")(type(get_merger("pcgrad")))
    with pytest.raises(ValueError, match=r"unknown merger 'sum'; available: \['mgda', 'pcgrad', 'weighted_sum'\]"):
        get_merger("sum")


def test_align_norms_unit_and_match_first_rescale_per_trajectory():
    grads = planar((3.0, 4.0), (0.0, 2.0))
    unit = align_norms(grads, "unit")
    torch.testing.assert_close(unit.flatten(1).norm(dim=-1), torch.ones(2, dtype=torch.float64))
    matched = align_norms(grads, "match_first")
    assert torch.equal(matched[0], grads[0])
    expected = torch.tensor([0.0, 5.0 * 2.0 / (2.0 + 1e-7)], dtype=torch.float64)
    torch.testing.assert_close(matched[1].reshape(2), expected)


def test_align_norms_match_first_zeroes_tiny_gradients_and_skips_tiny_reference():
    zeroed = align_norms(planar((3.0, 4.0), (1e-6, 0.0)), "match_first", zero_norm_eps=1e-4)
    assert torch.equal(zeroed[1], torch.zeros(1, 1, 2, dtype=torch.float64))
    grads = planar((1e-6, 0.0), (3.0, 4.0))
    assert torch.equal(align_norms(grads, "match_first", zero_norm_eps=1e-4), grads)


def test_align_norms_leaves_single_objective_and_none_mode_alone():
    grads = torch.randn(1, 2, 3, 4)
    assert align_norms(grads, "unit") is grads
    many = torch.randn(2, 2, 3, 4)
    assert align_norms(many, "none") is many
    with pytest.raises(ValueError, match="norm alignment must be one of"):
        align_norms(many, "max")


def test_normalize_gradient_unit_and_sqrt_length_are_exact():
    grad = torch.zeros(1, 3, 2, dtype=torch.float64)
    grad[0, 0] = torch.tensor([3.0, 4.0])
    grad[0, 2] = torch.tensor([0.0, 12.0])  # norm 13, two active rows
    unit = normalize_gradient(grad, "unit")
    torch.testing.assert_close(unit, grad / 13.0)
    scaled = normalize_gradient(grad, "sqrt_length")
    torch.testing.assert_close(scaled, grad * math.sqrt(2.0) / (13.0 + 1e-7))
    assert normalize_gradient(grad, "none") is grad


def test_normalize_gradient_passes_zero_gradient_unchanged():
    grad = torch.zeros(2, 3, 4)
    assert torch.equal(normalize_gradient(grad, "unit"), grad)
    assert torch.equal(normalize_gradient(grad, "sqrt_length"), grad)
