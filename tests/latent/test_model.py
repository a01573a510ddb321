"""Oracles 1-5 of the spec: equivalences of the latent forward, masking, and gradient flow."""

import pytest
import torch

from softtoken.latent.batching import collate, student_example
from softtoken.latent.generation import generate, left_pad
from softtoken.latent.losses import shifted_ce
from softtoken.latent.tiny import tiny_latent_model

ATOL = 1e-5


def _students(tokenizer, token_ids, rows, counts):
    return [student_example(tokenizer, token_ids, {**r, "num_latent": k}, True, False) for r, k in zip(rows, counts, strict=True)]


def _finite_close(a, b):
    assert torch.equal(torch.isfinite(a), torch.isfinite(b))
    mask = torch.isfinite(a)
    assert torch.allclose(a[mask], b[mask], atol=ATOL)


def test_forward_without_latent_block_matches_base_model(latent_model, tokenizer, token_ids, rows):
    ids, mask = left_pad([tokenizer(r["question"])["input_ids"] for r in rows[:3]], token_ids.pad)
    ours = latent_model(ids, mask).logits[..., : latent_model.base_vocab]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    base = latent_model.base(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    real = mask.bool()
    assert torch.allclose(ours[real], base[real], atol=ATOL)


def test_forward_batched_matches_per_row_under_both_paddings(latent_model, tokenizer, token_ids, rows):
    examples = _students(tokenizer, token_ids, rows[:3], [1, 3, 2])
    singles = [latent_model(torch.tensor([e.ids]), torch.ones(1, len(e.ids), dtype=torch.long)).logits[0]
               for e in examples]
    aligned = collate(examples, token_ids.pad)
    left_ids, left_mask = left_pad([e.ids for e in examples], token_ids.pad)
    for ids, mask in ((aligned.ids, aligned.mask), (left_ids, left_mask)):
        logits = latent_model(ids, mask).logits
        for row, single in enumerate(singles):
            _finite_close(logits[row][mask[row].bool()], single)


def test_incremental_decoding_matches_teacher_forcing(latent_model, tokenizer, token_ids, rows):
    prompts = [tokenizer("<bos>" + r["question"])["input_ids"] + [token_ids.start] for r in rows[:3]]
    out = generate(latent_model, prompts, max_new_tokens=10, max_latent_steps=50, temperature=1.0,
                   generator=torch.Generator().manual_seed(0), return_logits=True)
    assert any(token_ids.cont in c for c in out.completions)  # the latent block is exercised
    for row, (prompt, completion) in enumerate(zip(prompts, out.completions, strict=True)):
        full = torch.tensor([prompt + completion])
        forced = latent_model(full, torch.ones_like(full)).logits[0, len(prompt) - 1 : -1]
        _finite_close(out.logits[row, : len(completion)], forced)


def test_stop_head_positions_have_exactly_two_finite_logits(latent_model, tokenizer, token_ids, rows):
    batch = collate(_students(tokenizer, token_ids, rows[:4], [2, 1, 3, 2]), token_ids.pad)
    logits = latent_model(batch.ids, batch.mask).logits
    binary = latent_model.binary_positions(batch.ids)
    finite = torch.isfinite(logits)
    assert bool((finite[binary].sum(-1) == 2).all())
    assert bool(finite[binary][:, [token_ids.cont, token_ids.stop]].all())
    banned = [token_ids.cont, token_ids.stop, token_ids.end]
    assert not bool(finite[~binary][:, banned].any())


def test_latent_grammar_violations_raise(latent_model, token_ids):
    with pytest.raises(ValueError, match="END"):
        latent_model(torch.tensor([[5, token_ids.end, 6]]), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="grammar"):
        latent_model(torch.tensor([[5, token_ids.cont, token_ids.stop]]), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="grammar"):
        latent_model(torch.tensor([[5, token_ids.start, 7]]), torch.ones(1, 3, dtype=torch.long))


def test_filter_gets_gradient_from_answer_ce_through_the_chain(tokenizer, token_ids, rows):
    model = tiny_latent_model(tokenizer).train()
    batch = collate(_students(tokenizer, token_ids, rows[:2], [3, 3]), token_ids.pad)
    answer_only = batch.labels.masked_fill(torch.isin(batch.ids, torch.tensor(token_ids.latent)), -100)
    shifted_ce(model(batch.ids, batch.mask).logits, answer_only).backward()
    first = model.filter[0].weight.grad
    assert first is not None and float(first.abs().sum()) > 0


def test_detached_stop_head_leaves_backbone_without_gradient(tokenizer, token_ids, rows):
    model = tiny_latent_model(tokenizer, detach_binary_head_inputs=True).train()
    batch = collate(_students(tokenizer, token_ids, rows[:2], [2, 3]), token_ids.pad)
    after_binary = torch.zeros_like(batch.mask, dtype=torch.bool)
    after_binary[:, 1:] = model.binary_positions(batch.ids[:, :-1])
    head_only = batch.labels.masked_fill(~after_binary, -100)
    shifted_ce(model(batch.ids, batch.mask).logits, head_only).backward()
    backbone = [p.grad for p in model.base.parameters() if p.grad is not None]
    assert all(float(g.abs().sum()) == 0 for g in backbone)
    assert model.filter[0].weight.grad is None or float(model.filter[0].weight.grad.abs().sum()) == 0
    assert float(model.special_in.grad[2:].abs().sum()) > 0  # the CONTINUE/STOP rows learn
