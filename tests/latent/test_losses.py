"""Oracle 7 and the KD building blocks."""

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.batching import collate, student_example, teacher_example
from softtoken.latent.losses import distill, masked_mean, select_blocks
from softtoken.latent.sft import sft_loss
from softtoken.latent.tiny import tiny_latent_model


def test_distill_layerwise_std_makes_blocks_scale_free():
    gen = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(4, 3, 8, generator=gen), torch.randn(4, 3, 8, generator=gen)
    scale = torch.tensor([1.0, 100.0, 0.01])[None, :, None]
    plain = distill(student, teacher, "mean_l2", "layerwise_std")
    assert torch.allclose(distill(student * scale, teacher * scale, "mean_l2", "layerwise_std"), plain, rtol=1e-4)
    assert not torch.allclose(distill(student * scale, teacher * scale, "mean_l2", "none"),
                              distill(student, teacher, "mean_l2", "none"))


def test_distill_is_zero_for_identical_states_and_detaches_teacher():
    teacher = torch.randn(2, 2, 4, requires_grad=True)
    student = teacher.detach().clone().requires_grad_(True)
    loss = distill(student, teacher, "smooth_l1", "layerwise_std")
    loss.backward()
    assert float(loss.detach()) == 0 and teacher.grad is None


def test_select_blocks_drops_embeddings_and_checks_range():
    layers = tuple(torch.full((1, 1, 1), float(i)) for i in range(5))  # embeddings + 4 blocks
    assert [float(b) for b in select_blocks(layers, (1, 2))] == [2.0, 3.0]
    with pytest.raises(ValueError, match="block_range"):
        select_blocks(layers, (3, 12))


def test_masked_mean_averages_marked_positions_only():
    block = torch.arange(6, dtype=torch.float).view(1, 6, 1)
    mask = torch.tensor([[False, True, False, True, False, False]])
    assert float(masked_mean([block], mask)) == 2.0


def test_student_target_is_the_token_before_the_answer_digits(tokenizer, token_ids, rows):
    for row in rows[:5]:
        example = student_example(tokenizer, token_ids, {**row, "num_latent": 3}, True, False)
        assert tokenizer.decode(example.ids[example.target]) == " "
        assert tokenizer.decode(example.ids[example.target + 1 : -1]) == row["answer"]


@pytest.mark.parametrize("extra", ["codi_loss_20", "mean_reasoning_loss_20/intermediate_block_tiny_0_1"])
def test_sft_losses_go_down_on_a_fixed_batch(tokenizer, token_ids, rows, extra):
    config = opts.resolve("sft", f"latent_flat_2/remove_last_reasoning_step/calc_smooth_l1/norm_layerwise_std/"
                                 f"shift_target_token_one/{extra}")
    model = tiny_latent_model(tokenizer).train()
    picked = [{**r, "steps": r["steps"][:-1] or r["steps"], "num_latent": 2} for r in rows[:8]]
    teacher = collate([teacher_example(tokenizer, token_ids, r, "", True) for r in picked], token_ids.pad)
    student = collate([student_example(tokenizer, token_ids, r, True, False) for r in picked], token_ids.pad)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(12):
        loss, metrics = sft_loss(model, teacher, student, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(metrics)
    for key in history[0]:
        assert history[-1][key] < history[0][key], key
