import math

import pytest
import torch
import torch.nn.functional as F

from softtoken.lm.frame import Frame
from softtoken.objectives import (
    OBJECTIVES,
    AllowedTokens,
    BannedTokens,
    Entropy,
    Fluency,
    FreeRunningTargetCE,
    ObjectiveContext,
    TargetCE,
    get_objective_class,
    register_objective,
    target_loss,
)

CONTEXT = ObjectiveContext(target_ids=(15, 50, 8))


def random_probs(lm, batch=2, length=4, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(batch, length, lm.prompt_vocab_size, generator=generator), -1)


def one_hot(lm, ids: torch.Tensor) -> torch.Tensor:
    return F.one_hot(torch.searchsorted(lm.allowed_ids, ids), lm.prompt_vocab_size).float()


def test_target_ce_on_one_hot_prompt_equals_ce_of_plain_forward(tiny_lm, tiny_model):
    prompt = torch.tensor([[9, 30, 41, 22], [5, 6, 7, 8]])
    loss = TargetCE().loss(tiny_lm, one_hot(tiny_lm, prompt), CONTEXT)
    target = torch.tensor(CONTEXT.target_ids)
    full = tiny_model(input_ids=torch.cat([prompt, target[:-1].expand(2, -1)], dim=1)).logits[:, 3:6].float()
    expected = torch.stack([F.cross_entropy(full[b], target) for b in range(2)])
    assert loss.shape == (2,)
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("objective", [TargetCE(), FreeRunningTargetCE(), FreeRunningTargetCE(feedback="relaxed"),
                                       Fluency(), Entropy(), BannedTokens(token_ids=(9, 10))])
def test_objective_losses_are_per_trajectory_and_differentiable(tiny_lm, objective):
    probs = random_probs(tiny_lm, batch=3).requires_grad_(True)
    objective.check(tiny_lm, CONTEXT)
    loss = objective.loss(tiny_lm, probs, CONTEXT)
    assert loss.shape == (3,)
    (grad,) = torch.autograd.grad(loss.sum(), probs)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    for b in range(3):
        single = objective.loss(tiny_lm, probs[b : b + 1].detach(), CONTEXT)
        torch.testing.assert_close(single, loss[b : b + 1].detach(), rtol=1e-4, atol=1e-5)


def test_free_running_ce_with_greedy_feedback_scores_greedy_rollout(tiny_lm):
    prompt = torch.tensor([[9, 30, 41, 22]])
    logits = tiny_lm.rollout_logits(tiny_lm.embed_ids(prompt), 3)
    expected = F.cross_entropy(logits[0], torch.tensor(CONTEXT.target_ids))
    loss = FreeRunningTargetCE().loss(tiny_lm, one_hot(tiny_lm, prompt), CONTEXT)
    torch.testing.assert_close(loss, expected.reshape(1), rtol=1e-4, atol=1e-5)


def test_fluency_scores_token_i_plus_1_with_logits_at_i(tiny_lm, tiny_model):
    probs = random_probs(tiny_lm, batch=2, length=5)
    embeds = tiny_lm.embed_probs(probs)
    terms = []
    for i in range(4):
        logits_i = tiny_model(inputs_embeds=embeds[:, : i + 1]).logits[:, -1].float()  # only prefix 0..i
        log_q = torch.log_softmax(logits_i, -1)[:, tiny_lm.allowed_ids]
        terms.append(-(probs[:, i + 1] * log_q).sum(-1))
    expected = torch.stack(terms, dim=1).mean(-1)
    torch.testing.assert_close(Fluency().loss(tiny_lm, probs, CONTEXT), expected, rtol=1e-4, atol=1e-5)


def test_fluency_on_one_hot_prompt_equals_shifted_nll_of_ids(tiny_lm, tiny_model):
    prompt = torch.tensor([[9, 30, 41, 22, 7]])
    logits = tiny_model(input_ids=prompt).logits.float()
    expected = F.cross_entropy(logits[0, :-1], prompt[0, 1:])
    torch.testing.assert_close(Fluency().loss(tiny_lm, one_hot(tiny_lm, prompt), CONTEXT), expected.reshape(1),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frame", [None, Frame(prefix_ids=(3, 4), suffix_ids=(5,))])
def test_target_pass_fluency_equals_the_separate_objectives_and_their_gradients(tiny_lm, frame):
    # One forward gives the target loss and the prompt's fluency; each equals its own objective's pass.
    lm = tiny_lm if frame is None else tiny_lm.framed(frame)
    leaf = random_probs(lm, batch=3, length=5).requires_grad_(True)
    target, predictions, fluency = TargetCE().loss_predictions_and_fluency(lm, leaf, CONTEXT)
    expected_target, expected_predictions = TargetCE().loss_and_predictions(lm, leaf, CONTEXT)
    expected_fluency = Fluency().loss(lm, leaf, CONTEXT)
    torch.testing.assert_close(target, expected_target, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fluency, expected_fluency, rtol=1e-5, atol=1e-6)
    assert torch.equal(predictions, expected_predictions)
    grad, = torch.autograd.grad((target + 0.3 * fluency).sum(), leaf)
    expected_grad, = torch.autograd.grad((expected_target + 0.3 * expected_fluency).sum(), leaf)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-6)


def test_fluency_rejects_single_token_prompt(tiny_lm):
    with pytest.raises(ValueError, match="needs a prompt of >= 2 tokens, got 1"):
        Fluency().loss(tiny_lm, random_probs(tiny_lm, length=1), CONTEXT)


def test_entropy_is_exact_on_uniform_two_point_and_one_hot_rows(tiny_lm):
    vocab = tiny_lm.prompt_vocab_size
    uniform = torch.full((1, 1, vocab), 1.0 / vocab)
    two_point = torch.zeros(1, 1, vocab)
    two_point[..., :2] = 0.5
    one = torch.zeros(1, 1, vocab)
    one[..., 3] = 1.0
    probs = torch.cat([uniform, two_point, one], dim=1)  # (1, 3, V)
    expected = (math.log(vocab) + math.log(2.0) + 0.0) / 3
    assert Entropy().loss(tiny_lm, probs, CONTEXT).item() == pytest.approx(expected, rel=1e-6)


def test_banned_and_allowed_token_mass_are_exact_complements(tiny_lm):
    probs = random_probs(tiny_lm, batch=2, length=3)
    ids = (9, 10, 11)
    index = torch.searchsorted(tiny_lm.allowed_ids, torch.tensor(ids))
    banned = BannedTokens(token_ids=ids).loss(tiny_lm, probs, CONTEXT)
    torch.testing.assert_close(banned, probs[..., index].sum(-1).mean(-1))
    allowed = AllowedTokens(token_ids=ids).loss(tiny_lm, probs, CONTEXT)
    torch.testing.assert_close(banned + allowed, torch.ones(2))


def test_token_mass_ignores_ids_outside_the_prompt_vocabulary(tiny_lm):
    # id 1 is <s>: special, never in the prompt vocabulary, so it carries no mass.
    assert BannedTokens(token_ids=(1,)).penalised(tiny_lm).sum().item() == 0


def test_target_objectives_check_for_missing_or_out_of_range_target(tiny_lm):
    with pytest.raises(ValueError, match="'target' needs ObjectiveContext.target_ids"):
        TargetCE().check(tiny_lm, ObjectiveContext())
    with pytest.raises(ValueError, match="target ids outside"):
        FreeRunningTargetCE().check(tiny_lm, ObjectiveContext(target_ids=(10_000,)))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TargetCE(weight=-1.0), "TargetCE.weight must be finite and >= 0, got -1.0"),
        (lambda: TargetCE(label=""), "TargetCE.label must be non-empty"),
        (lambda: FreeRunningTargetCE(feedback="soft"), "FreeRunningTargetCE.feedback must be one of"),
        (lambda: FreeRunningTargetCE(feedback_temperature=0.0), "feedback_temperature must be > 0"),
        (lambda: BannedTokens(), r"BannedTokens.token_ids must be non-empty"),
    ],
)
def test_objective_configs_reject_bad_values(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_objective_registry_defaults_labels_and_rejects_duplicates_and_unknown():
    assert sorted(OBJECTIVES) == ["allowed_tokens", "banned_tokens", "entropy", "fluency", "target", "target_free"]
    for name in ("target", "target_free", "fluency", "entropy"):
        assert get_objective_class(name)().label == name
    with pytest.raises(ValueError, match="already registered"):
        register_objective("target")(TargetCE)
    with pytest.raises(ValueError, match=r"unknown objective 'ppl'; available: \['allowed_tokens'"):
        get_objective_class("ppl")


def test_token_mass_mask_mode_forbids_exactly_the_penalised_entries(tiny_lm):
    ids = (9, 10, 11)
    assert BannedTokens(token_ids=ids).forbidden(tiny_lm) is None
    for cls in (BannedTokens, AllowedTokens):
        objective = cls(token_ids=ids, mode="mask")
        assert torch.equal(objective.forbidden(tiny_lm), objective.penalised(tiny_lm))
    assert TargetCE().forbidden(tiny_lm) is None
    with pytest.raises(ValueError, match=r"BannedTokens.mode must be one of \('penalty', 'mask'\), got 'hard'"):
        BannedTokens(token_ids=ids, mode="hard")


def test_target_loss_matches_cross_entropy_margin_and_mellowmax_by_hand():
    logits = torch.randn(3, 4, 9, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    target = torch.tensor([1, 2, 3, 4])
    per_token = torch.stack([torch.nn.functional.cross_entropy(row, target, reduction="none") for row in logits])
    torch.testing.assert_close(target_loss(logits, target), per_token.mean(-1))
    log_probs = logits.log_softmax(-1)
    margin = log_probs.max(-1).values - log_probs[:, torch.arange(4), target]
    torch.testing.assert_close(target_loss(logits, target, token_loss="margin"), margin.mean(-1))
    alpha = 2.0
    soft_max = (torch.logsumexp(alpha * per_token, -1) - torch.log(torch.tensor(4.0, dtype=torch.float64))) / alpha
    mellow = target_loss(logits, target, reduction="mellowmax", alpha=alpha)
    torch.testing.assert_close(mellow, soft_max)
    assert (per_token.mean(-1) <= mellow + 1e-12).all() and (mellow <= per_token.max(-1).values).all()


def test_target_objectives_score_hard_ids_as_their_one_hot_relaxation(tiny_lm):
    context = ObjectiveContext(target_ids=(7, 8, 9))
    index = torch.tensor([[1, 5, 2], [4, 4, 0]])
    one_hot = torch.nn.functional.one_hot(index, tiny_lm.prompt_vocab_size).float()
    for objective in (TargetCE(token_loss="margin"), FreeRunningTargetCE(reduction="mellowmax")):
        hard, hard_predictions = objective.hard_loss_and_predictions(tiny_lm, index, context)
        soft, soft_predictions = objective.loss_and_predictions(tiny_lm, one_hot, context)
        torch.testing.assert_close(hard, soft, rtol=1e-5, atol=1e-6)
        assert torch.equal(hard_predictions, soft_predictions)


@pytest.mark.parametrize(("field", "value"), [("token_loss", "hinge"), ("reduction", "max"), ("mellowmax_alpha", 0.0)])
def test_target_objectives_reject_unknown_losses(field, value):
    with pytest.raises(ValueError, match=field):
        TargetCE(**{field: value})
