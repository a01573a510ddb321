"""Oracle 7 and the KD building blocks."""

import re

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.batching import collate, student_example, teacher_example
from softtoken.latent.losses import distill, masked_mean, select_blocks, step_result_ce
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


@pytest.mark.parametrize("extra", ["codi_loss_20", "mean_reasoning_loss_20/intermediate_block_tiny_0_1",
                                   "step_result_loss_1", "step_codi_loss_1"])
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


def test_step_results_sit_on_the_states_that_feed_each_thought(tokenizer, token_ids, rows):
    row = next(r for r in rows if len(r["steps"]) == 3)
    results = [re.search(r"=(-?\d+)>>", step)[1] for step in row["steps"]]
    for thoughts, supervised in [(2, 2), (3, 3), (5, 3), (0, 0)]:
        example = student_example(tokenizer, token_ids, {**row, "num_latent": thoughts}, True, False)
        positions = [p for p, _ in example.step_results]
        assert positions == list(range(example.split, example.split + supervised))
        assert [example.ids[p] for p in positions] == ([token_ids.start] + [token_ids.cont] * 4)[:supervised]
        assert [tokenizer.decode(t) for _, t in example.step_results] == results[:supervised]


def test_collated_step_positions_follow_the_left_padding(tokenizer, token_ids, rows):
    picked = [{**rows[0], "num_latent": 1}, {**max(rows, key=lambda r: len(r["question"])), "num_latent": 3}]
    examples = [student_example(tokenizer, token_ids, r, True, False) for r in picked]
    batch = collate(examples, token_ids.pad)
    for b, example in enumerate(examples):
        n = len(example.step_results)
        assert batch.step_tokens[b, :n].tolist() == [t for _, t in example.step_results]
        assert batch.step_tokens[b, n:].eq(-100).all() and batch.step_positions[b, n:].eq(-1).all()
        assert batch.ids[b, batch.step_positions[b, :n]].tolist() == [example.ids[p] for p, _ in example.step_results]


def test_step_result_ce_is_the_mean_ce_over_the_marked_positions():
    torch.manual_seed(0)
    hidden, head = torch.randn(2, 5, 4), torch.nn.Linear(4, 7, bias=False)
    positions, tokens = torch.tensor([[1, 3], [0, -1]]), torch.tensor([[2, 6], [5, -100]])
    expected = -(torch.log_softmax(head(hidden[0, 1]), -1)[2] + torch.log_softmax(head(hidden[0, 3]), -1)[6]
                 + torch.log_softmax(head(hidden[1, 0]), -1)[5]) / 3
    assert torch.allclose(step_result_ce(hidden, head, positions, tokens), expected)
    none = step_result_ce(hidden, head, torch.full((2, 0), -1), torch.full((2, 0), -100))
    assert float(none) == 0.0


def test_teacher_step_positions_are_the_tokens_right_before_each_result(tokenizer, token_ids, rows):
    for row in rows[:6]:
        example = teacher_example(tokenizer, token_ids, row, "", True, locate_steps=True)
        results = [re.search(r"=(-?\d+)>>", step)[1] for step in row["steps"]]
        assert len(example.step_results) == len(row["steps"])
        for (position, token), result in zip(example.step_results, results):
            assert tokenizer.decode(example.ids[position]) == "=" and example.ids[position + 1] == token
            assert tokenizer.decode(token) == result[0]  # the word tokenizer spells numbers digit by digit
    assert teacher_example(tokenizer, token_ids, rows[0], "", True).step_results == []


def test_step_codi_pairs_thought_i_with_the_teachers_step_i_and_is_zero_when_they_agree(tokenizer, token_ids, rows):
    config = opts.resolve("sft", "latent_flat_2/step_codi_loss_1/calc_smooth_l1/norm_none")
    model = tiny_latent_model(tokenizer).eval()
    picked = [{**r, "num_latent": 2} for r in rows[:4]]
    teacher = collate([teacher_example(tokenizer, token_ids, r, "", True, locate_steps=True) for r in picked],
                      token_ids.pad)
    student = collate([student_example(tokenizer, token_ids, r, True, False) for r in picked], token_ids.pad)
    _, metrics = sft_loss(model, teacher, student, config)
    t_out = model(teacher.ids, teacher.mask, output_hidden_states=True)
    s_out = model(student.ids, student.mask, output_hidden_states=True)
    pairs = [(b, int(teacher.step_positions[b, i]), int(student.step_positions[b, i]))
             for b in range(4) for i in range(min(2, len(picked[b]["steps"])))]
    per_block = [torch.stack([torch.nn.functional.smooth_l1_loss(s_layer[b, s], t_layer[b, t], reduction="none")
                              for b, t, s in pairs]).mean()
                 for t_layer, s_layer in zip(t_out.layers[1:], s_out.layers[1:], strict=True)]
    assert metrics["loss/step_codi"] == pytest.approx(torch.stack(per_block).mean().item(), rel=1e-5)
