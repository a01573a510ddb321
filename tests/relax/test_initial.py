import torch

from softtoken.relax import initial_logits, simplex_start


def test_simplex_start_is_the_softmax_of_the_same_draw():
    start = simplex_start((2, 3, 7), std=1.5, generator=torch.Generator().manual_seed(4), device="cpu")
    logits = initial_logits((2, 3, 7), std=1.5, generator=torch.Generator().manual_seed(4), device="cpu")
    assert torch.equal(start, torch.softmax(logits, dim=-1))
    assert torch.allclose(start.sum(-1), torch.ones(2, 3))
    assert not torch.allclose(start[0], start[1])  # the prompts of a batch start apart


def test_simplex_start_with_std_zero_is_uniform_and_draws_nothing():
    generator = torch.Generator().manual_seed(4)
    state = generator.get_state()
    start = simplex_start((1, 2, 5), std=0.0, generator=generator, device="cpu")
    assert torch.equal(start, torch.full((1, 2, 5), 0.2))
    assert torch.equal(generator.get_state(), state)
