import pytest
import torch

from softtoken.lm import loading
from softtoken.lm.softlm import SoftLM, has_cxx_compiler
from softtoken.lm.vocab import prompt_vocabulary, special_token_ids


def one_hot_over_prompt_vocab(lm: SoftLM, ids: torch.Tensor) -> torch.Tensor:
    index = torch.searchsorted(lm.allowed_ids, ids)
    assert torch.equal(lm.allowed_ids[index], ids)
    return torch.nn.functional.one_hot(index, lm.prompt_vocab_size).float()


def test_prompt_vocabulary_excludes_special_tokens_and_rows_beyond_tokenizer(tiny_lm, tiny_tokenizer):
    allowed = set(tiny_lm.allowed_ids.tolist())
    assert not allowed & special_token_ids(tiny_tokenizer)
    assert max(allowed) == len(tiny_tokenizer) - 1
    assert tiny_lm.embedding.shape[0] == len(tiny_tokenizer) + 2


def test_prompt_vocabulary_applies_bans_and_rejects_empty(tiny_tokenizer):
    ids = prompt_vocabulary(tiny_tokenizer, 100, banned=[5, 6], allowed=[5, 6, 7, 1, 999])
    assert ids.tolist() == [7]
    with pytest.raises(ValueError, match="empty"):
        prompt_vocabulary(tiny_tokenizer, 100, allowed=[1, 2])


def test_soft_embedding_of_one_hot_equals_lookup(tiny_lm):
    ids = torch.tensor([[7, 12, 40]])
    soft = tiny_lm.embed_probs(one_hot_over_prompt_vocab(tiny_lm, ids))
    torch.testing.assert_close(soft, tiny_lm.embed_ids(ids))


def test_teacher_forced_logits_match_plain_forward_on_ids(tiny_lm, tiny_model):
    prompt, target = torch.tensor([[9, 30, 41, 22]]), torch.tensor([15, 50, 8])
    embeds = tiny_lm.embed_probs(one_hot_over_prompt_vocab(tiny_lm, prompt))
    logits = tiny_lm.teacher_forced_logits(embeds, target)
    full = tiny_model(input_ids=torch.cat([prompt, target[:-1].unsqueeze(0)], dim=1)).logits
    assert logits.shape == (1, 3, tiny_lm.output_vocab_size)
    torch.testing.assert_close(logits, full[:, 3:6].float(), rtol=1e-4, atol=1e-5)


def test_free_running_rollout_equals_generate_for_hard_prompt(tiny_lm, tiny_model):
    prompt = torch.tensor([[11, 23, 35], [5, 6, 7]])
    ours = tiny_lm.greedy_generate(prompt, 6)
    theirs = tiny_model.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                 attention_mask=torch.ones_like(prompt), pad_token_id=3)[:, 3:]
    assert torch.equal(ours, theirs)
    embeds = tiny_lm.embed_probs(one_hot_over_prompt_vocab(tiny_lm, prompt))
    assert torch.equal(tiny_lm.rollout_logits(embeds, 6).argmax(-1), theirs)


def test_rollout_gradient_reaches_prompt_through_kv_cache(tiny_lm):
    probs = torch.full((1, 3, tiny_lm.prompt_vocab_size), 1.0 / tiny_lm.prompt_vocab_size, requires_grad=True)
    logits = tiny_lm.rollout_logits(tiny_lm.embed_probs(probs), 4)
    logits[:, -1].logsumexp(-1).sum().backward()
    assert probs.grad is not None and probs.grad.abs().sum() > 0


def test_relaxed_feedback_is_differentiable(tiny_lm):
    logits = torch.randn(2, tiny_lm.output_vocab_size, requires_grad=True)
    embeds = tiny_lm.relaxed_feedback_embeds(torch.softmax(logits, -1))
    assert embeds.shape == (2, 1, tiny_lm.hidden_size)
    embeds.sum().backward()
    assert logits.grad.abs().sum() > 0


def test_compute_dtype_autocasts_model_passes_and_float32_changes_nothing(tiny_lm):
    prompt = tiny_lm.embed_ids(torch.tensor([[3, 4, 5]]))
    target = torch.tensor([7, 8, 9])
    reference = tiny_lm.teacher_forced_logits(prompt, target)
    with tiny_lm.compute("float32"):
        assert torch.equal(tiny_lm.teacher_forced_logits(prompt, target), reference)
    with tiny_lm.compute("bfloat16"):
        fast = tiny_lm.teacher_forced_logits(prompt, target)
        low = tiny_lm.active_model  # a bf16-weight copy; rotary frequencies and other buffers stay float32
        assert {p.dtype for p in low.parameters()} == {torch.bfloat16}
        assert {b.dtype for b in low.buffers() if b.is_floating_point()} == {torch.float32}
    assert tiny_lm.active_model is tiny_lm.model and {p.dtype for p in tiny_lm.model.parameters()} == {torch.float32}
    assert fast.dtype == torch.float32 and not torch.equal(fast, reference)
    torch.testing.assert_close(fast, reference, atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="int8"):
        tiny_lm.compute("int8")


@pytest.mark.parametrize("flags, copied", [(frozenset({"avx2"}), False), (frozenset({"avx512_bf16"}), True)])
def test_auto_compute_runs_bf16_only_where_the_cpu_has_it(tiny_lm, monkeypatch, flags, copied):
    monkeypatch.setattr(loading, "cpu_flags", lambda: flags)
    with tiny_lm.compute("auto"):
        dtypes = {p.dtype for p in tiny_lm.active_model.parameters()}
        assert (tiny_lm.active_model is not tiny_lm.model) == copied
    assert dtypes == ({torch.bfloat16} if copied else {torch.float32})


def test_embed_probs_under_bf16_compute_matches_float32_and_passes_gradients(tiny_lm):
    probs = torch.softmax(torch.randn(2, 3, tiny_lm.prompt_vocab_size, generator=torch.Generator().manual_seed(0)), -1)
    reference = tiny_lm.embed_probs(probs)
    leaf = probs.clone().requires_grad_(True)
    with tiny_lm.compute("bfloat16"):
        fast = tiny_lm.embed_probs(leaf)
    fast.sum().backward()
    assert fast.dtype == reference.dtype and not torch.equal(fast, reference)
    torch.testing.assert_close(fast, reference, atol=0.02, rtol=0.02)
    torch.testing.assert_close(leaf.grad, tiny_lm.prompt_matrix.sum(-1).expand_as(leaf), atol=0.05, rtol=0.02)


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on a CPU needs a C++ compiler")
def test_compiled_compute_matches_eager_values_and_gradients_and_leaves_the_model_alone(tiny_lm):
    from softtoken.lm.softlm import decoder_layers

    probs = torch.softmax(torch.randn(2, 3, tiny_lm.prompt_vocab_size, generator=torch.Generator().manual_seed(1)), -1)
    target = torch.tensor([7, 8, 9])

    def loss_and_grad(compiled: bool) -> tuple[torch.Tensor, torch.Tensor, object]:
        leaf = probs.clone().requires_grad_(True)
        with tiny_lm.compute("float32", compiled=compiled):
            logits = tiny_lm.teacher_forced_logits(tiny_lm.embed_probs(leaf), target)
            compiled_model = tiny_lm.active_model
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.repeat(2))
        (grad,) = torch.autograd.grad(loss, leaf)
        return loss.detach(), grad, compiled_model

    eager_loss, eager_grad, model = loss_and_grad(False)
    fast_loss, fast_grad, compiled_copy = loss_and_grad(True)
    assert model is tiny_lm.model and compiled_copy is not tiny_lm.model and tiny_lm.active_model is tiny_lm.model
    assert all(hasattr(layer, "_compiled_call_impl") and layer._compiled_call_impl is not None
               for layer in decoder_layers(compiled_copy))
    assert all(getattr(layer, "_compiled_call_impl", None) is None for layer in decoder_layers(tiny_lm.model))
    torch.testing.assert_close(fast_loss, eager_loss, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fast_grad, eager_grad, rtol=1e-3, atol=1e-5)  # fused kernels round differently


def test_compile_without_a_cxx_compiler_says_so(tiny_model, monkeypatch):
    from softtoken.lm import softlm

    monkeypatch.setattr(softlm.shutil, "which", lambda name: None)
    assert not softlm.has_cxx_compiler()
    with pytest.raises(RuntimeError, match="C\\+\\+ compiler"):
        softlm.compile_decoder_layers(tiny_model)


def test_decoder_layers_names_a_model_without_them():
    from softtoken.lm.softlm import decoder_layers

    with pytest.raises(ValueError, match="Linear"):
        decoder_layers(torch.nn.Linear(2, 2))
