"""Latent thoughts are recurrent: the input of latent step j is F(h) of the position before it, so the
answer depends on the hidden states that feed the filter; with zero latent steps nothing goes through F.

Teacher-forced passes only: tests/latent/test_model.py shows KV-cached decoding gives the same logits.
"""

import copy

import torch

from softtoken.latent.batching import student_example


def _sequence(tokenizer, token_ids, row, k):
    """(1, T) ids and mask of `Question ... <START> <|CONTINUE|>xk <|STOP|> The answer is: ...`."""
    ids = torch.tensor([student_example(tokenizer, token_ids, {**row, "num_latent": k}, True, False).ids])
    return ids, torch.ones_like(ids)


def _columns(ids, token):
    return (ids[0] == token).nonzero().flatten().tolist()


def _perturb_filter_input_at(model, step, calls):
    """Pre-hook recording every filter input and adding 1 to the one of latent step `step` (0-based; None: none)."""
    def hook(_module, args):
        calls.append(args[0].detach().clone())
        if len(calls) - 1 == step:
            return (args[0] + 1.0,)
        return None
    return model.filter.register_forward_pre_hook(hook)


def test_each_latent_input_is_the_filter_of_the_previous_hidden_state(latent_model, tokenizer, token_ids, rows):
    ids, mask = _sequence(tokenizer, token_ids, rows[0], 3)
    events = []  # in call order: ("filter", input, output) and ("backbone", inputs_embeds)
    latent_model.filter.register_forward_hook(lambda _m, args, out: events.append(("filter", args[0], out)))
    latent_model.causal.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: events.append(("backbone", kwargs["inputs_embeds"])), with_kwargs=True)
    out = latent_model(ids, mask)
    filters = [i for i, event in enumerate(events) if event[0] == "filter"]
    assert len(filters) == 3
    for i, column in zip(filters, _columns(ids, token_ids.cont), strict=True):
        _, h_in, f_out = events[i]
        assert torch.equal(h_in[0], out.hidden[0, column - 1])  # h of the previous position
        assert events[i + 1][0] == "backbone" and torch.equal(events[i + 1][1][0, 0], f_out[0])  # fed as the input


def test_perturbing_the_hidden_state_feeding_one_latent_step_changes_the_answer(latent_model, tokenizer, token_ids,
                                                                                 rows):
    ids, mask = _sequence(tokenizer, token_ids, rows[0], 3)
    clean_calls, bumped_calls = [], []
    handle = _perturb_filter_input_at(latent_model, None, clean_calls)
    clean = latent_model(ids, mask).logits[0]
    handle.remove()
    _perturb_filter_input_at(latent_model, 1, bumped_calls)
    bumped = latent_model(ids, mask).logits[0]
    second = _columns(ids, token_ids.cont)[1]
    answer = slice(_columns(ids, token_ids.stop)[0], None)
    # Only the copy of h going into F changed, so everything before latent step 1 is untouched ...
    assert torch.equal(bumped[:second], clean[:second]) and torch.equal(bumped_calls[1], clean_calls[1])
    # ... and the change reaches the next step's input and the answer only through the recurrence.
    assert not torch.equal(bumped_calls[2], clean_calls[2])
    finite = torch.isfinite(clean[answer])
    assert (bumped[answer][finite] - clean[answer][finite]).abs().max() > 1e-3


def test_with_zero_latent_steps_the_answer_does_not_depend_on_the_filter(latent_model, tokenizer, token_ids, rows):
    other = copy.deepcopy(latent_model)
    with torch.no_grad():
        for p in other.filter.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    calls = []
    _perturb_filter_input_at(other, 0, calls)
    ids, mask = _sequence(tokenizer, token_ids, rows[0], 0)
    assert torch.equal(other(ids, mask).logits, latent_model(ids, mask).logits) and calls == []
    # The same change does move the answer once there is a latent step (so the check above can fail).
    ids, mask = _sequence(tokenizer, token_ids, rows[0], 2)
    changed, clean = other(ids, mask).logits, latent_model(ids, mask).logits
    finite = torch.isfinite(clean)
    assert len(calls) == 2 and (changed[finite] - clean[finite]).abs().max() > 1e-3
