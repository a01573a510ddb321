"""Every registered method inverts inside a frame: fixed ids before and after the prompt."""

import dataclasses
from collections import Counter

import pytest
import torch

from softtoken.lm.frame import Frame
from softtoken.methods import METHODS, Budget, Problem, get_method_class
from softtoken.methods.presets import get_preset, with_options

FRAME = Frame(prefix_ids=(12, 30, 7), suffix_ids=(9, 21), prefix_text="w8 w26 w3 ", suffix_text=" w5 w17")
SEARCH = {"search_width": 16, "topk": 8, "eval_every": 1, "init_text": " w5"}
# (preset, small-budget options, steps) for each registered method, sized like the bare-prompt tests.
CASES = {
    "dlmi": ("gbda", {"learning_rate": 0.3, "eval_every": 1, "batch_size": 4}, 100),
    "gcg": ("gcg-combo", {**SEARCH, "model_proposals": 2, "candidate_batch_size": 8}, 20),
    "soda": ("soda-paper", {"soda_init_strategy": "normal", "eval_every": 1}, 40),
    "reinforce": ("reinforce", {"learning_rate": 0.3, "eval_every": 1}, 100),
    "pez": ("pez", {"learning_rate": 1.0, "eval_every": 1}, 40),
    "adc": ("adc", {"eval_every": 1}, 40),
    "pgd": ("pgd", {"learning_rate": 1.0, "warmup_steps": 0, "entropy_anneal_steps": 20, "patience": 10,
                    "eval_every": 1}, 60),
    "program": ("anneal", {"eval_every": 1}, 120),
    "relax-then-search": ("relax-then-gcg", {}, 30),
}


def build(method: str):
    preset, options, steps = CASES[method]
    name, config = get_preset(preset)
    if method == "program":
        config = dataclasses.replace(config, stages=tuple({**stage, "steps": 40} for stage in config.stages))
    if method == "relax-then-search":
        config = dataclasses.replace(config, relax_steps=10, relax=dataclasses.replace(config.relax, batch_size=4),
                                     search=with_options(config.search, SEARCH))
    return get_method_class(name)(with_options(config, options)), steps


@pytest.fixture(scope="module")
def framed(tiny_lm):
    return tiny_lm.framed(FRAME)


@pytest.fixture(scope="module")
def reachable(framed):
    """The 3-token output most 2-token prompts produce inside the frame (brute force)."""
    vocab = framed.allowed_ids
    outputs = framed.greedy_generate(torch.cartesian_prod(vocab, vocab), 3)
    return Counter(map(tuple, outputs.tolist())).most_common(1)[0][0]


def test_every_registered_method_has_an_in_context_case():
    assert set(CASES) == set(METHODS)


@pytest.mark.parametrize("method", sorted(CASES))
def test_method_recovers_a_reachable_target_inside_a_frame(framed, tiny_lm, reachable, method):
    bare = tiny_lm.greedy_generate(torch.cartesian_prod(tiny_lm.allowed_ids, tiny_lm.allowed_ids), 3)
    assert Counter(map(tuple, bare.tolist())).most_common(1)[0][0] != reachable  # the frame changes the task
    runner, steps = build(method)
    results = []
    for seed in range(3):
        results.append(runner.run(Problem(lm=framed, target_ids=reachable, prompt_length=2, seed=seed),
                                  Budget(steps=steps)))
        if results[-1].exact_match:
            break
    best = results[-1]
    assert best.exact_match, [r.metrics for r in results]
    ids = torch.tensor([FRAME.around(best.prompt_ids)])
    assert tiny_lm.greedy_generate(ids, 3)[0].tolist() == list(reachable)  # the bare model on the full sequence
    assert best.context == FRAME.to_dict()


@pytest.mark.parametrize("method", sorted(CASES))
def test_method_keeps_to_a_restricted_vocabulary(tiny_lm, method):
    allowed = tiny_lm.allowed_ids[5::7]  # every seventh token, with the " w5" that GCG starts from
    lm = tiny_lm.restricted(allowed).framed(FRAME)
    runner, _ = build(method)
    result = runner.run(Problem(lm=lm, target_ids=(20, 21, 22), prompt_length=3, seed=0), Budget(steps=3))
    assert set(result.prompt_ids) <= set(allowed.tolist()), result.prompt_ids
