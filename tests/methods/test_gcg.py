import itertools
from dataclasses import replace

import pytest
import torch

from softtoken.lm.frame import Frame, FramedTarget
from softtoken.lm.softlm import SoftLM
from softtoken.methods import GCG, Budget, GCGConfig, Problem, get_preset
from softtoken.methods.candidates import lowest_estimate_swaps, sample_candidates, span_placements
from softtoken.methods.gcg import Buffer, combined_swaps, model_proposal_gradient, roundtrip_mask
from softtoken.methods.starts import target_spans
from softtoken.objectives import TargetCE


def test_gcg_candidates_come_from_the_topk_of_the_negative_gradient():
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(5, 30, generator=generator)  # (L, V)
    current = torch.randint(0, 30, (5,), generator=generator)
    candidates = sample_candidates(current, grad, search_width=200, topk=4, n_replace=2, generator=generator)
    top = (-grad).topk(4, dim=-1).indices  # (L, K)
    changed = candidates != current
    assert candidates.shape == (200, 5) and (changed.sum(-1) <= 2).all() and changed.any()
    for position in range(5):
        new = candidates[changed[:, position], position]
        assert torch.isin(new, top[position]).all()


def test_gcg_changes_exactly_n_replace_distinct_positions_when_the_topk_excludes_current():
    grad = torch.zeros(4, 10)
    grad[:, 5:] = -1.0  # top-5 of -grad is tokens 5..9; current tokens are all 0
    candidates = sample_candidates(torch.zeros(4, dtype=torch.long), grad, search_width=50, topk=5, n_replace=3,
                                   generator=torch.Generator().manual_seed(1))
    assert ((candidates != 0).sum(-1) == 3).all() and (candidates[candidates != 0] >= 5).all()


def test_gcg_never_samples_masked_tokens(tiny_model, tiny_tokenizer):
    allowed = torch.tensor([10, 11, 12, 13, 14, 15])
    lm = SoftLM(tiny_model, tiny_tokenizer, allowed_ids=allowed)
    seen = []

    class Spy(GCG):
        def _candidates(self, run, current, grad):
            assert grad.shape == (3, allowed.numel())  # the one-hot lives on the prompt vocabulary only
            candidates = super()._candidates(run, current, grad)
            seen.append(run.lm.to_model_ids(candidates))
            return candidates

    result = Spy(GCGConfig(search_width=32, topk=3, eval_every=1, init_strategy="zeros")).run(
        Problem(lm=lm, target_ids=(7, 8), prompt_length=3), Budget(steps=3))
    assert torch.isin(torch.cat(seen), allowed).all() and set(result.prompt_ids) <= set(allowed.tolist())


def test_gcg_roundtrip_filter_drops_candidates_that_retokenise_differently(tiny_lm):
    lm = SoftLM(tiny_lm.model, tiny_lm.tokenizer)
    ids = {name: tiny_lm.encode(name)[0] for name in ("w1", "w2", "w3")}
    lm.encode = lambda text: tiny_lm.encode(text.replace("w1 w2", "w3"))  # a tokenizer that merges a pair
    index = {model_id: i for i, model_id in enumerate(lm.allowed_ids.tolist())}
    candidates = torch.tensor([[index[ids["w1"]], index[ids["w2"]]], [index[ids["w2"]], index[ids["w1"]]]])
    assert roundtrip_mask(lm, candidates).tolist() == [False, True]


def test_gcg_buffer_keeps_the_lowest_losses_and_zero_capacity_keeps_the_latest():
    buffer = Buffer(2)
    for loss in (3.0, 1.0, 2.0, 5.0):
        buffer.offer(loss, torch.tensor([int(loss)]))
    assert [loss for loss, _ in buffer.entries] == [1.0, 2.0] and buffer.best()[0] == 1.0
    latest = Buffer(0)
    latest.offer(1.0, torch.tensor([1]))
    latest.offer(4.0, torch.tensor([4]))
    assert latest.best()[0] == 4.0


def test_gcg_accept_only_if_better_never_raises_the_loss(tiny_lm):
    config = GCGConfig(search_width=8, topk=4, accept_only_if_better=True, eval_every=100, init_text=" w5")
    result = GCG(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9, 10), prompt_length=3, seed=0), Budget(steps=6))
    losses = result.history["loss/target"]
    assert all(b <= a for a, b in itertools.pairwise(losses))


def test_gcg_counts_candidate_passes_as_forward_tokens(tiny_lm):
    config = GCGConfig(search_width=8, topk=4, eval_every=100, filter_ids=False, init_strategy="random")
    result = GCG(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=2, seed=0), Budget(steps=2))
    per_pass = 2 + 3 - 1
    evaluations = result.history["eval/final"].count(False)  # the final entry re-reports a judged prompt
    assert result.backward_tokens == 2 * per_pass
    assert result.forward_tokens == per_pass * (1 + 2 * (1 + 8) + evaluations)


def test_gcg_rejects_more_replacements_than_positions(tiny_lm):
    with pytest.raises(ValueError, match="n_replace"):
        problem = Problem(lm=tiny_lm, target_ids=(7,), prompt_length=2)
        GCG(GCGConfig(n_replace=3, init_strategy="zeros")).run(problem, Budget(steps=1))


def test_gcg_text_init_repeats_one_token_and_rejects_multi_token_text(tiny_lm):
    config = GCGConfig(search_width=4, topk=2, eval_every=100, init_text=" w5 w6")
    with pytest.raises(ValueError, match="init_text"):
        GCG(config).run(Problem(lm=tiny_lm, target_ids=(7,), prompt_length=2), Budget(steps=1))
    method = GCG(GCGConfig(init_text=" w5"))
    run = method.harness(Problem(lm=tiny_lm, target_ids=(7,), prompt_length=3), Budget(steps=1))
    initial = method._init(run, method.objective(run.problem))
    assert tiny_lm.to_model_ids(initial).tolist() == tiny_lm.encode(" w5 w5 w5")


def test_gcg_target_init_starts_from_the_lowest_loss_rotation_of_the_target(tiny_lm):
    target = tuple(tiny_lm.encode(" w5 w6 w7"))
    method = GCG(GCGConfig(init_strategy="target"))
    run = method.harness(Problem(lm=tiny_lm, target_ids=target, prompt_length=4), Budget(steps=1))
    objective = method.objective(run.problem)
    initial = tiny_lm.to_model_ids(method._init(run, objective)).tolist()
    rotations = [[target[(shift + i) % 3] for i in range(4)] for shift in range(3)]
    index = torch.tensor([[tiny_lm.allowed_ids.tolist().index(t) for t in row] for row in rotations])
    losses = objective.hard_loss_and_predictions(tiny_lm, index, run.context)[0]
    assert initial == rotations[int(losses.argmin())] and len(set(losses.tolist())) == 3


def test_gcg_target_init_refuses_a_target_outside_the_prompt_vocabulary(tiny_model, tiny_tokenizer):
    lm = SoftLM(tiny_model, tiny_tokenizer, allowed_ids=torch.tensor([10, 11, 12]))
    with pytest.raises(ValueError, match="init_strategy='target'"):
        GCG(GCGConfig(init_strategy="target")).run(Problem(lm=lm, target_ids=(7, 8), prompt_length=3), Budget(steps=1))


def test_gcg_distinct_swaps_cover_every_topk_swap_exactly_once():
    generator = torch.Generator().manual_seed(0)
    grad = torch.zeros(3, 12)
    grad[:, 6:] = -torch.rand(3, 6, generator=generator) - 1.0  # top-4 of -grad never holds current token 0
    current = torch.zeros(3, dtype=torch.long)
    top = (-grad).topk(4, dim=-1).indices
    candidates = sample_candidates(current, grad, search_width=100, topk=4, n_replace=1, generator=generator,
                                   distinct=True)
    swaps = {(int(p), int(row[p])) for row in candidates for p in (row != 0).nonzero()[:, 0]}
    assert candidates.shape == (12, 3) and ((candidates != 0).sum(-1) == 1).all()
    assert swaps == {(p, int(t)) for p in range(3) for t in top[p]}
    fewer = sample_candidates(current, grad, search_width=5, topk=4, n_replace=1, generator=generator, distinct=True)
    assert fewer.shape == (5, 3) and torch.unique(fewer, dim=0).shape[0] == 5


@pytest.mark.parametrize("field, bad", [("distinct_swaps", True), ("compute_dtype", "int8")])
def test_gcg_config_rejects_distinct_multi_swaps_and_unknown_dtypes(field, bad):
    with pytest.raises(ValueError, match=field):
        GCGConfig(n_replace=2, **{field: bad})


def test_gcg_starts_from_a_given_initial_prompt(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=4, seed=0)
    initial = torch.tensor([3, 9, 1, 5])
    result = GCG(GCGConfig(search_width=8, topk=4, eval_every=1)).run(problem, Budget(steps=1), initial=initial)
    found = [tiny_lm.allowed_ids.tolist().index(i) for i in result.prompt_ids]
    assert sum(a != b for a, b in zip(found, initial.tolist())) <= 1  # one single-token swap away
    with pytest.raises(ValueError, match="initial prompt"):
        GCG(GCGConfig(search_width=8, topk=4)).run(problem, Budget(steps=1), initial=torch.tensor([1, 2]))


def test_gcg_bf16_search_is_judged_in_float32(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=3, seed=0)
    config = GCGConfig(search_width=8, topk=4, eval_every=1, init_strategy="zeros", compute_dtype="bfloat16")
    result = GCG(config).run(problem, Budget(steps=3))
    output = tiny_lm.greedy_generate(torch.tensor([result.prompt_ids]), 2)[0].tolist()
    assert output == result.output_ids and all(torch.isfinite(torch.tensor(result.history["loss/target"])))


def test_combined_swaps_apply_the_best_improving_swap_of_each_position_in_loss_order():
    current = torch.tensor([0, 0, 0, 0])
    candidates = torch.tensor([[5, 0, 0, 0], [0, 6, 0, 0], [7, 0, 0, 0], [0, 0, 8, 0], [0, 0, 0, 9]])
    losses = torch.tensor([0.5, 0.2, 0.1, 0.9, 2.0])  # current loss 1.0: the swap at position 3 is worse
    combined = combined_swaps(current, candidates, losses, 1.0, count=4)
    # In loss order: (0 -> 7), (1 -> 6), (2 -> 8); (0 -> 5) loses to (0 -> 7); position 3 does not improve.
    assert combined.tolist() == [[7, 6, 0, 0], [7, 6, 8, 0]]
    assert combined_swaps(current, candidates, losses, 1.0, count=1).tolist() == [[7, 6, 0, 0]]
    assert combined_swaps(current, candidates, losses, 0.15, count=4).shape == (0, 4)  # one improving swap only


def test_model_proposals_put_the_model_next_tokens_in_each_later_position_top_k():
    grad = torch.zeros(3, 8)
    grad[:, :2] = -1.0  # the gradient's own top-2: tokens 0 and 1 everywhere
    next_logits = torch.zeros(2, 8)
    next_logits[0, 6], next_logits[1, 4] = 5.0, 5.0  # the model's favourites for positions 1 and 2
    top = (-model_proposal_gradient(grad, next_logits, 1)).topk(2, dim=-1).indices
    assert set(top[0].tolist()) == {0, 1} and 6 in top[1].tolist() and 4 in top[2].tolist()


@pytest.mark.parametrize("options", [{"combine_swaps": 3}, {"proposal_momentum": 0.5}, {"model_proposals": 2},
                                     {"restart_patience": 2}, {"init_strategy": "target"}, {"target_curriculum": 1},
                                     {"copy_candidates": 3}, {"copy_spans": 3}])
def test_gcg_levers_are_deterministic_for_the_same_seed(tiny_lm, options):
    config = GCGConfig(search_width=8, topk=4, eval_every=2, **{"init_strategy": "zeros", **options})
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=3)
    first, again = GCG(config).run(problem, Budget(steps=6)), GCG(config).run(problem, Budget(steps=6))
    assert first.history["loss/target"] == again.history["loss/target"] and first.prompt_ids == again.prompt_ids


def test_gcg_restarts_from_a_fresh_prompt_when_the_loss_stalls(tiny_lm):
    config = GCGConfig(search_width=2, topk=2, eval_every=100, init_strategy="zeros", restart_patience=1,
                       accept_only_if_better=True)
    result = GCG(config).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9, 10), prompt_length=3, seed=0), Budget(steps=12))
    restarts = result.history.get("search/restart_step", [])
    assert restarts and all(b > a for a, b in itertools.pairwise(restarts))


@pytest.mark.parametrize("field, bad", [("combine_swaps", -1), ("proposal_momentum", 1.0), ("model_proposals", 32),
                                        ("restart_patience", -2), ("target_curriculum", -1),
                                        ("copy_candidates", -1), ("copy_candidates", 2.0), ("copy_spans", -1),
                                        ("copy_span_length", 1), ("copy_span_length", "2")])
def test_gcg_config_rejects_bad_lever_values(field, bad):
    with pytest.raises(ValueError, match=field):
        GCGConfig(topk=32, **{field: bad})


def test_copy_candidates_add_the_target_token_swaps_the_gradient_ranks_first_and_not_the_drawn_ones(tiny_lm):
    current = torch.tensor([3, 4])
    grad = torch.zeros(2, tiny_lm.prompt_vocab_size)
    grad[1, 7], grad[0, 8], grad[0, 7] = -3.0, -2.0, -1.0  # the estimates rank [3, 7], [8, 4], [7, 4], then the rest
    method = GCG(GCGConfig(copy_candidates=2, filter_ids=False))
    run = method.harness(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2), Budget(steps=1))
    drawn = torch.tensor([[3, 7], [5, 4]])  # the first-ranked copy swap was drawn already
    tokens = torch.tensor([7, 8])
    spans = torch.empty(0, 2, dtype=torch.long)
    assert method._with_copies(run, current, grad, drawn, tokens, spans).tolist() == [[3, 7], [5, 4], [8, 4]]


def test_span_placements_are_every_placement_of_each_span_that_changes_the_prompt():
    placements = span_placements(torch.tensor([0, 1, 2]), torch.tensor([[1, 2], [5, 6]]))
    assert placements.tolist() == [[1, 2, 2], [5, 6, 2], [0, 5, 6]]  # [0, 1, 2] itself is left out
    assert span_placements(torch.tensor([0]), torch.tensor([[1, 2]])).shape == (0, 1)


def test_target_spans_are_the_distinct_runs_of_target_tokens_inside_the_prompt_vocabulary(tiny_lm):
    restricted = tiny_lm.restricted(torch.tensor([3, 7, 9, 20]))
    assert target_spans(restricted, (9, 3, 9, 3, 21, 7, 20), 2).tolist() == [[2, 0], [0, 2], [1, 3]]
    assert target_spans(restricted, (9, 21), 2).shape == (0, 2)


def test_lowest_estimate_swaps_sum_the_first_order_change_over_every_changed_position():
    current = torch.tensor([0, 1, 2])
    grad = torch.tensor([[0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.7], [0.0, 0.0, 0.0, -0.5]])
    swaps = span_placements(current, torch.tensor([[3, 3]]))  # [3, 3, 2]: -1 + 0.7; [0, 3, 3]: 0.7 - 0.5
    assert lowest_estimate_swaps(current, swaps, grad, 1).tolist() == [[3, 3, 2]]


def test_copy_spans_add_the_span_placements_the_gradient_ranks_first_after_the_copy_swaps(tiny_lm):
    current = torch.tensor([3, 4, 5])
    grad = torch.zeros(3, tiny_lm.prompt_vocab_size)
    grad[1, 8], grad[2, 9], grad[0, 8], grad[1, 9] = -3.0, -2.0, -0.5, -0.4  # [3, 8, 9]: -5, [8, 9, 5]: -0.9
    method = GCG(GCGConfig(copy_candidates=1, copy_spans=1, filter_ids=False))
    run = method.harness(Problem(lm=tiny_lm, target_ids=(8, 9), prompt_length=3), Budget(steps=1))
    drawn = torch.tensor([[5, 4, 5]])
    added = method._with_copies(run, current, grad, drawn, torch.tensor([8, 9]), torch.tensor([[8, 9]]))
    assert added.tolist() == [[5, 4, 5], [3, 8, 5], [3, 8, 9]]  # the first-ranked copy swap, then span placement


def test_gcg_with_copy_spans_recovers_a_planted_prompt(tiny_lm, planted_target):
    # A planted 3-token prompt and its 3-token continuation, from the first token. Measured: seeds 1 and 2 succeed
    # at steps 12 and 16 (seed 0 not in 60; without spans seeds 0 and 2 at 18 and 33, seed 1 not in 60: the random
    # tiny model copies nothing, so spans are a search lever there, not a shortcut), each step scoring the 8 drawn
    # and up to 4 span candidates.
    target = planted_target(plant_seed=5, prompt_length=3, target_length=3)
    config = GCGConfig(search_width=8, topk=8, copy_spans=4, eval_every=1000, init_strategy="zeros")
    for seed in (1, 2):
        result = GCG(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=3, seed=seed), Budget(steps=30))
        assert result.exact_match and result.metrics["eval/exact_match"], (seed, result.metrics)
        assert all(8 < count <= 12 for count in result.history["search/candidates"]), result.history


def test_gcg_rejects_a_copy_span_longer_than_the_prompt(tiny_lm):
    with pytest.raises(ValueError, match="copy_span_length=3 exceeds prompt_length=2"):
        GCG(GCGConfig(copy_spans=2, copy_span_length=3)).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=2))


def test_gcg_with_copy_candidates_scores_them_each_step_and_recovers_a_planted_prompt(tiny_lm, planted_target):
    # A planted 2-token prompt and target (the tiny model's greedy continuation), from the first token. Measured:
    # success at steps 5, 19 and 2 with seeds 0-2 (without copy candidates none in 20 steps); each step scores the
    # 8 drawn and up to 4 copy candidates.
    target = planted_target(plant_seed=1, prompt_length=2, target_length=2)
    config = GCGConfig(search_width=8, topk=8, copy_candidates=4, eval_every=1000, init_strategy="zeros")
    for seed in range(3):
        result = GCG(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=2, seed=seed), Budget(steps=30))
        assert result.exact_match and result.metrics["eval/exact_match"], (seed, result.metrics)
        assert all(8 < count <= 12 for count in result.history["search/candidates"]), result.history


def test_prefix_cache_scoring_matches_full_scoring(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=5, seed=0)
    current = torch.tensor([3, 9, 1, 5, 2])
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(5, tiny_lm.prompt_vocab_size, generator=generator)
    candidates = torch.cat([sample_candidates(current, grad, search_width=40, topk=6, n_replace=2, generator=generator),
                            current[None]])  # the unchanged prompt too
    positions = assert_scores_as_whole_scoring(tiny_lm, problem, GCGConfig(candidate_batch_size=7, prefix_cache=True),
                                               candidates, current)
    assert positions < candidates.shape[0] * (5 + 3 - 1)  # the shared prefixes are not recomputed


def assert_scores_as_whole_scoring(tiny_lm, problem, config, candidates, current) -> int:
    """Scores candidates with `config` and with plain whole scoring; asserts the same losses and matches and returns
    the positions `config` sent through the model."""
    whole, other = GCG(GCGConfig(candidate_batch_size=config.candidate_batch_size)), GCG(config)
    run = whole.harness(problem, Budget(steps=1))
    full_losses, full_exact = whole._score(run, whole.objective(problem), candidates, current)
    before = tiny_lm.tokens.forward
    losses, exact = other._score(run, other.objective(problem), candidates, current)
    torch.testing.assert_close(losses, full_losses, rtol=1e-5, atol=1e-6)
    assert torch.equal(exact, full_exact)
    return tiny_lm.tokens.forward - before


def screen_candidates(tiny_lm):
    current = torch.tensor([3, 9, 1, 5, 2])
    generator = torch.Generator().manual_seed(0)
    grad = torch.randn(5, tiny_lm.prompt_vocab_size, generator=generator)
    return current, sample_candidates(current, grad, search_width=24, topk=6, n_replace=1, generator=generator)


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_target_screening_finishes_the_lowest_head_losses_of_each_chunk_with_the_full_losses(tiny_lm, prefix_cache):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9, 4), prompt_length=5, seed=0)
    current, candidates = screen_candidates(tiny_lm)  # (24, 5)
    whole = GCG(GCGConfig(candidate_batch_size=8, prefix_cache=prefix_cache))
    run = whole.harness(problem, Budget(steps=1))
    full_losses, full_exact = whole._score(run, whole.objective(problem), candidates, current)
    embeds = tiny_lm.embed_ids(tiny_lm.to_model_ids(candidates))  # (24, 5, D)
    head = TargetCE().reduce(tiny_lm.teacher_forced_logits(embeds, torch.tensor([7, 8])),
                             torch.tensor([7, 8]))  # (24,) each candidate's loss on the first two target tokens
    screened = GCG(GCGConfig(candidate_batch_size=8, prefix_cache=prefix_cache, screen_tokens=2, screen_keep=0.3))
    losses, exact = screened._score(run, screened.objective(problem), candidates, current)
    order = candidates.ne(current).float().argmax(-1).argsort(stable=True) if prefix_cache else torch.arange(24)
    for chunk in order.split(8):  # ceil(0.3 * 8) = 3 of each chunk of 8 are finished
        kept = chunk[head[chunk].argsort()[:3]]
        assert torch.isfinite(losses[chunk]).sum() == 3 and set(kept.tolist()) == set(chunk[torch.isfinite(
            losses[chunk])].tolist())
        torch.testing.assert_close(losses[kept], full_losses[kept], rtol=1e-5, atol=1e-6)
        assert torch.equal(exact[kept], full_exact[kept]) and not exact[chunk][~torch.isfinite(losses[chunk])].any()


def test_target_screening_keeping_every_candidate_scores_as_whole_scoring_for_fewer_positions(tiny_lm):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9, 4), prompt_length=5, seed=0)
    current, candidates = screen_candidates(tiny_lm)
    config = GCGConfig(candidate_batch_size=8, screen_tokens=1, screen_keep=1.0)
    positions = assert_scores_as_whole_scoring(tiny_lm, problem, config, candidates, current)
    assert positions == 24 * (5 + 4 - 1)  # the head's 5 positions, then the tail's 3


def test_gcg_with_target_screening_recovers_a_planted_prompt_the_same_for_the_same_seed(tiny_lm, planted_target):
    # A planted 3-token prompt and its 3-token continuation, from the first token, each chunk of 8 screened on the
    # first target token and half finished. Measured: success at steps 18, 3, 4, 25 and 9 with seeds 0-4 (without
    # the screen, seeds 0 and 3 not in 40 steps: halving the scored candidates is not what makes it harder).
    target = planted_target(plant_seed=5, prompt_length=3, target_length=3)
    config = GCGConfig(search_width=16, topk=8, screen_tokens=1, screen_keep=0.5, eval_every=1000,
                       init_strategy="zeros", candidate_batch_size=8)
    for seed in range(5):
        result = GCG(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=3, seed=seed), Budget(steps=30))
        assert result.exact_match and result.metrics["eval/exact_match"], (seed, result.metrics)
    problem = Problem(lm=tiny_lm, target_ids=target, prompt_length=3, seed=0)
    first, again = GCG(config).run(problem, Budget(steps=12)), GCG(config).run(problem, Budget(steps=12))
    assert first.prompt_ids == again.prompt_ids and first.history["loss/target"] == again.history["loss/target"]


@pytest.mark.parametrize("options, message", [
    ({"screen_tokens": 3}, "screen_tokens=3 needs one target longer than it, got 3 tokens"),
    ({"screen_tokens": 1, "target_curriculum": 1}, "screen_tokens and target_curriculum do not combine"),
    ({"screen_keep": 0.0}, "screen_keep must be in \\(0, 1\\], got 0.0"),
    ({"screen_keep": 1.5}, "screen_keep must be in"),
    ({"screen_tokens": -1}, "screen_tokens must be >= 0, got -1"),
    ({"screen_keep": "0.5"}, "screen_keep"),
    ({"screen_tokens": 2.0}, "screen_tokens")])
def test_gcg_rejects_bad_target_screens_before_any_model_work(tiny_lm, options, message):
    before = tiny_lm.tokens.forward
    with pytest.raises((ValueError, TypeError), match=message):
        GCG(GCGConfig(**options)).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=2))
    assert tiny_lm.tokens.forward == before


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_scoring_stops_at_the_deadline_and_leaves_the_rest_unscored(tiny_lm, prefix_cache):
    problem = Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=4, seed=0)
    method = GCG(GCGConfig(candidate_batch_size=3, prefix_cache=prefix_cache))
    run = method.harness(problem, Budget(steps=1))
    current = torch.tensor([3, 9, 1, 5])
    candidates = torch.stack([current.roll(shift) for shift in range(8)])  # (8, L)
    run.clock.expired = lambda: True  # the budget ran out during this step
    losses, exact = method._score(run, method.objective(problem), candidates, current)
    assert torch.isfinite(losses).sum() == 3 and not exact[~torch.isfinite(losses)].any()  # one chunk scored


def test_a_start_that_does_not_round_trip_is_searched_out_of_unfiltered(tiny_lm):
    glued = Frame(prefix_ids=(5,), prefix_text="w1")  # "w1" + the prompt's text merges: nothing round-trips
    problem = Problem(lm=tiny_lm.framed(glued), target_ids=(7, 8), prompt_length=2)
    result = GCG(GCGConfig(search_width=8, topk=4, eval_every=1, init_strategy="zeros")).run(problem, Budget(steps=2))
    assert result.history["search/unfiltered_step"] == [1, 2] and result.steps_run == 2
    assert result.metrics["eval/roundtrip_exact"] is False


def test_gcg_target_recovers_a_planted_prompt(tiny_lm, planted_target):
    # The preset at a tiny-model width, on a planted 2-token prompt and 2-token target whose own tokens do not
    # reach it (checked first), so the success is the search's. Measured: success at step 4 with seeds 0-2.
    target = planted_target(plant_seed=1, prompt_length=2, target_length=2)
    _, preset = get_preset("gcg-target")
    config = replace(preset, search_width=16, topk=8, model_proposals=2, candidate_batch_size=8, eval_every=1000)
    start = GCG(config)
    run = start.harness(Problem(lm=tiny_lm, target_ids=target, prompt_length=2), Budget(steps=1))
    start_ids = tiny_lm.to_model_ids(start._init(run, start.objective(run.problem)))
    assert tiny_lm.greedy_generate(start_ids[None], 2)[0].tolist() != list(target)
    for seed in range(3):
        result = GCG(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=2, seed=seed), Budget(steps=20))
        assert result.exact_match and result.metrics["eval/exact_match"], (seed, result.metrics)


def test_gcg_copy_preset_is_gcg_fast_with_16_copy_candidates():
    method, config = get_preset("gcg-copy")
    assert method == "gcg" and config == replace(get_preset("gcg-fast")[1], copy_candidates=16)


def test_gcg_copy_screen_preset_is_gcg_copy_screened_on_three_target_tokens_in_one_chunk():
    method, config = get_preset("gcg-copy-screen")
    assert method == "gcg" and config == replace(get_preset("gcg-copy")[1], screen_tokens=3, screen_keep=0.25,
                                                 candidate_batch_size=80)


def test_gcg_target_preset_is_gcg_combo_from_the_target():
    method, config = get_preset("gcg-target")
    assert method == "gcg" and config == replace(get_preset("gcg-combo")[1], init_strategy="target")


def test_target_curriculum_extends_past_the_leading_right_tokens_and_rescores_the_buffer(tiny_lm):
    # A prompt whose greedy continuation starts the target: the first two tokens are right, the third is not.
    prompt = torch.tensor([3, 9, 1])
    greedy = tiny_lm.greedy_generate(tiny_lm.to_model_ids(prompt)[None], 3)[0].tolist()
    target = (*greedy[:2], (greedy[2] + 1) % tiny_lm.prompt_vocab_size, 5)
    method = GCG(GCGConfig(target_curriculum=1, buffer_size=2))
    problem = Problem(lm=tiny_lm, target_ids=target, prompt_length=3)
    run = method.harness(problem, Budget(steps=1))
    run.context = replace(run.context, target_ids=target[:1])
    buffer = Buffer(2)
    buffer.offer(0.0, prompt)
    buffer.offer(0.5, torch.tensor([4, 4, 4]))
    rescored, hit = method._extend_target(run, method.objective(problem), buffer)
    assert run.context.target_ids == target[:3] and hit.shape == (0, 3)  # 2 right + 1 more
    shown = method._score(run, method.objective(problem), torch.stack([prompt, torch.tensor([4, 4, 4])]))[0]
    assert sorted(loss for loss, _ in rescored.entries) == sorted(shown.tolist())


def test_target_curriculum_reports_a_prompt_that_gets_the_whole_target_as_a_hit(tiny_lm, planted_target):
    target = planted_target(plant_seed=1, prompt_length=2, target_length=3)
    prompt = torch.randint(0, tiny_lm.prompt_vocab_size, (2,), generator=torch.Generator().manual_seed(1))
    method = GCG(GCGConfig(target_curriculum=1))
    run = method.harness(Problem(lm=tiny_lm, target_ids=target, prompt_length=2), Budget(steps=1))
    buffer = Buffer(0)
    buffer.offer(0.0, prompt)
    _, hit = method._extend_target(run, method.objective(run.problem), buffer)
    assert run.context.target_ids == target and torch.equal(hit, prompt[None])


def test_target_curriculum_recovers_a_planted_prompt_growing_its_target(tiny_lm, planted_target):
    # Measured: success at steps 13, 25 and 21 for seeds 0-2.
    target = planted_target(plant_seed=1, prompt_length=2, target_length=3)
    config = GCGConfig(search_width=32, topk=16, init_strategy="zeros", eval_every=1000, target_curriculum=1)
    for seed in range(3):
        result = GCG(config).run(Problem(lm=tiny_lm, target_ids=target, prompt_length=2, seed=seed), Budget(steps=30))
        shown = result.history["search/target_tokens"]
        assert result.exact_match, (seed, result.metrics)
        assert shown[0] == 1 and shown == sorted(shown), shown  # starts at one token and only grows


def test_target_curriculum_refuses_a_universal_problem(tiny_lm):
    problem = Problem(lm=tiny_lm, prompt_length=2, universal=(FramedTarget((7, 8), Frame()), FramedTarget((9,), Frame())))
    with pytest.raises(ValueError, match="target_curriculum"):
        GCG(GCGConfig(target_curriculum=1)).run(problem, Budget(steps=1))
