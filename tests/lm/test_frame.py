import pytest
import torch

from softtoken.lm.frame import Frame, build_frame, chat_frame, template_frame, text_frame
from softtoken.lm.softlm import SoftLM

PREFIX, SUFFIX = (12, 30, 7, 44), (9, 21)
CHAT_TEMPLATE = ("{% for m in messages %}<s> {{ m['role'] }} {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<s> assistant {% endif %}")


@pytest.fixture()
def framed(tiny_lm):
    return tiny_lm.framed(Frame(prefix_ids=PREFIX, suffix_ids=SUFFIX))


def full_logits(model, prompt, target):
    ids = torch.tensor([[*PREFIX, *prompt, *SUFFIX, *target[:-1]]])
    return model(input_ids=ids).logits[:, -len(target):].float()


def test_framed_teacher_forcing_equals_a_plain_pass_over_the_concatenation(framed, tiny_model):
    prompt, target = [5, 6, 40], [15, 50, 8]
    logits = framed.teacher_forced_logits(framed.embed_ids(torch.tensor([prompt, prompt])), torch.tensor(target))
    torch.testing.assert_close(logits, full_logits(tiny_model, prompt, target).expand(2, -1, -1),
                               rtol=1e-4, atol=1e-5)


def test_framed_gradient_equals_the_gradient_of_the_plain_pass(framed, tiny_model):
    prompt, target = torch.tensor([[5, 6, 40]]), torch.tensor([15, 50, 8])
    embeds = framed.embed_ids(prompt).clone().requires_grad_(True)
    framed.teacher_forced_logits(embeds, target).logsumexp(-1).sum().backward()
    leaf = embeds.detach().clone().requires_grad_(True)
    inputs = torch.cat([framed.embed_ids(torch.tensor([PREFIX])), leaf,
                        framed.embed_ids(torch.tensor([[*SUFFIX, *target[:-1].tolist()]]))], 1)
    tiny_model(inputs_embeds=inputs).logits[:, -3:].float().logsumexp(-1).sum().backward()
    torch.testing.assert_close(embeds.grad, leaf.grad, rtol=1e-4, atol=1e-6)


def test_framed_greedy_generation_equals_generation_from_the_concatenated_ids(framed, tiny_model):
    prompt = [11, 23, 35]
    ours = framed.greedy_generate(torch.tensor([prompt]), 5)[0].tolist()
    ids = [*PREFIX, *prompt, *SUFFIX]
    for _ in range(5):  # greedy by hand: a full pass per token, no cache
        ids.append(int(tiny_model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    assert ours == ids[-5:]


def test_framed_sequence_logits_read_the_prompt_after_the_prefix(framed, tiny_model):
    prompt = [11, 23, 35]
    logits = framed.sequence_logits(framed.embed_ids(torch.tensor([prompt])))
    plain = tiny_model(input_ids=torch.tensor([[*PREFIX, *prompt]])).logits[:, len(PREFIX):].float()
    torch.testing.assert_close(logits, plain, rtol=1e-4, atol=1e-5)


def test_framed_prefix_cache_scoring_equals_full_scoring(framed):
    current, target = torch.tensor([5, 6, 40, 41]), torch.tensor([15, 50, 8])
    candidates = torch.tensor([[5, 6, 9, 41], [5, 6, 40, 10]])
    cache = framed.prefix_cache(framed.embed_ids(current)[None])
    after = framed.teacher_forced_logits(framed.embed_ids(candidates[:, 2:]), target,
                                         framed.prompt_prefix_past(cache, 2, 2))
    full = framed.teacher_forced_logits(framed.embed_ids(candidates), target)
    torch.testing.assert_close(after, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("start", [1, 2, 3])
def test_a_target_head_then_its_tail_for_some_rows_equals_one_full_pass(framed, start):
    candidates, target = torch.tensor([[5, 6, 9, 41], [5, 6, 40, 10], [7, 6, 40, 41]]), torch.tensor([15, 50, 8, 3])
    full = framed.teacher_forced_logits(framed.embed_ids(candidates), target)  # (3, 4, V)
    head, cache = framed.teacher_forced_head(framed.embed_ids(candidates), target[:start])
    before = framed.tokens.forward
    tail = framed.teacher_forced_tail(cache, torch.tensor([2, 0]), target, start)
    torch.testing.assert_close(head, full[:, :start], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tail, full[[2, 0], start:], rtol=1e-4, atol=1e-5)
    assert framed.tokens.forward - before == 2 * (4 - start)  # only the two rows' rest of the target


def test_a_target_head_after_a_prompt_prefix_equals_one_full_pass(framed):
    current, target = torch.tensor([5, 6, 40, 41]), torch.tensor([15, 50, 8])
    candidates = torch.tensor([[5, 6, 9, 41], [5, 6, 40, 10]])
    cache = framed.prefix_cache(framed.embed_ids(current)[None])
    head, rest = framed.teacher_forced_head(framed.embed_ids(candidates[:, 2:]), target[:1],
                                            framed.prompt_prefix_past(cache, 2, 2))
    tail = framed.teacher_forced_tail(rest, torch.tensor([1]), target, 1)
    full = framed.teacher_forced_logits(framed.embed_ids(candidates), target)
    torch.testing.assert_close(head, full[:, :1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tail, full[1:, 1:], rtol=1e-4, atol=1e-5)


def test_the_prefix_is_run_once_per_model(tiny_lm):
    lm = tiny_lm.framed(Frame(prefix_ids=(40, 41, 42, 43, 44, 45, 46)))
    prompt, target = lm.embed_ids(torch.tensor([[5, 6]])), torch.tensor([7, 8])
    lm.teacher_forced_logits(prompt, target)
    before = lm.tokens.forward
    lm.teacher_forced_logits(prompt, target)
    assert lm.tokens.forward - before == 2 + 1  # prompt + target[:-1]; the 7 prefix positions come from the cache


def test_the_empty_frame_is_the_bare_prompt(tiny_lm):
    prompt, target = tiny_lm.embed_ids(torch.tensor([[5, 6, 7]])), torch.tensor([8, 9])
    bare = tiny_lm.teacher_forced_logits(prompt, target)
    assert torch.equal(tiny_lm.framed(Frame()).teacher_forced_logits(prompt, target), bare)


def test_template_needs_exactly_one_placeholder(tiny_tokenizer):
    frame = template_frame(tiny_tokenizer, "w1 w2 {prompt} w3")
    assert frame.prefix_ids == tuple(tiny_tokenizer("w1 w2 ", add_special_tokens=False).input_ids)
    assert frame.suffix_text == " w3" and frame.template == "w1 w2 {prompt} w3"
    for bad in ("no placeholder", "{prompt} and {prompt}"):
        with pytest.raises(ValueError, match="exactly one \\{prompt\\}"):
            template_frame(tiny_tokenizer, bad)


def test_frame_options_that_mean_two_things_are_refused(tiny_tokenizer):
    with pytest.raises(ValueError, match="one or the other"):
        build_frame(tiny_tokenizer, template="{prompt}", suffix="w1")
    with pytest.raises(ValueError, match="needs chat=True"):
        build_frame(tiny_tokenizer, system="be brief")


def test_a_model_without_chat_template_is_named(tiny_tokenizer):
    with pytest.raises(ValueError, match="tiny-model has no chat template"):
        chat_frame(tiny_tokenizer, model_name="tiny-model")


def test_chat_frame_splits_the_rendered_template_around_the_user_message(tiny_tokenizer, tiny_model):
    tokenizer = tiny_tokenizer.__class__(tokenizer_object=tiny_tokenizer.backend_tokenizer, unk_token="<unk>",
                                         bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    frame = chat_frame(tokenizer, system="w5")
    assert frame.prefix_text == "<s> system w5 </s> <s> user " and frame.suffix_text == " </s> <s> assistant "
    lm = SoftLM(tiny_model, tokenizer)
    assert frame.render(lm, "w1 w2") == frame.around(lm.encode("w1 w2"))
    inside = build_frame(tokenizer, chat=True, prefix="w9 ", suffix=" w8")  # text around the prompt in the message
    assert inside.prefix_text.endswith("<s> user w9 ") and inside.suffix_text.startswith(" w8 </s>")
    assert inside.template == "w9 {prompt} w8" and inside.render(lm, "w1") == inside.around(lm.encode("w1"))


def test_frame_round_trips_through_its_dict(tiny_tokenizer):
    frame = text_frame(tiny_tokenizer, "w1 ", " w2")
    assert Frame.from_dict(frame.to_dict()) == frame


def test_a_deprecated_transformers_keyword_from_softtoken_code_fails_the_tests(tiny_lm, monkeypatch):
    import inspect

    import softtoken.lm.softlm as softlm

    if "cache" not in inspect.signature(type(tiny_lm.model).forward).parameters:
        pytest.skip("this transformers still takes past_key_values without a warning")
    monkeypatch.setattr(softlm, "cache_kwargs", lambda model, cache: {} if cache is None else {"past_key_values": cache})
    with pytest.raises(AssertionError, match="past_key_values"):  # raised by tests/conftest.py's guard
        tiny_lm.greedy_generate(torch.tensor([[5, 6]]), 3)


def test_the_round_trip_catches_a_prompt_that_merges_with_its_template(tiny_lm):
    from softtoken.lm.evaluation import evaluate_prompts, roundtrip_exact, survives_reencoding

    prompt = [9, 10]  # "w5 w6"
    glued = Frame(prefix_ids=(5, 6), prefix_text="w1 w2", suffix_ids=(7,), suffix_text=" w3")  # no space before
    spaced = Frame(prefix_ids=(5, 6), prefix_text="w1 w2 ", suffix_ids=(7,), suffix_text=" w3")
    for frame, pasteable in ((glued, False), (spaced, True)):
        lm = tiny_lm.framed(frame)
        target = lm.greedy_generate(torch.tensor([prompt]), 3)[0].tolist()
        assert evaluate_prompts(lm, torch.tensor([prompt]), target)[0].exact_match  # the ids work in the frame
        assert survives_reencoding(lm, prompt) is pasteable  # "w1 w2w5 w6 w3" re-encodes to other ids
        assert roundtrip_exact(lm, prompt, target) is pasteable
