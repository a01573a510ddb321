"""Behaviour every baseline shares: recovery on the tiny model, determinism, keys, configs, imports."""

import ast
import dataclasses
import importlib
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from softtoken.methods import METHODS, Budget, Problem, Result, get_method_class
from softtoken.methods.presets import PRESETS, gbda, get_preset, with_options

# Small-budget versions of each preset for a 2-token prompt on the tiny model.
FAST = {
    "gbda": {"learning_rate": 0.3, "eval_every": 1, "batch_size": 4},
    "reinforce": {"learning_rate": 0.3, "eval_every": 1},
    "reinforce-paper": {"learning_rate": 0.3, "eval_every": 1},
    "soda-paper": {"soda_init_strategy": "normal", "eval_every": 1},
    "gcg": {"search_width": 16, "topk": 8, "eval_every": 1, "init_text": " w5"},
    "gcg-paper-lmi": {"search_width": 16, "topk": 8, "eval_every": 1},
}


def fast(preset: str):
    method, config = get_preset(preset)
    return get_method_class(method)(with_options(config, FAST[preset]))


@pytest.fixture(scope="module")
def reachable(tiny_lm):
    """The 3-token output the tiny model produces greedily from the most 2-token prompts (found by brute force)."""
    vocab = tiny_lm.allowed_ids
    outputs = tiny_lm.greedy_generate(torch.cartesian_prod(vocab, vocab), 3)
    return Counter(map(tuple, outputs.tolist())).most_common(1)[0][0]


@pytest.mark.parametrize("preset, steps", [("gbda", 100), ("reinforce", 100), ("reinforce-paper", 100),
                                           ("soda-paper", 40), ("gcg", 20), ("gcg-paper-lmi", 20)])
def test_baseline_recovers_a_reachable_target(tiny_lm, reachable, preset, steps):
    results = []
    for seed in range(3):
        result = fast(preset).run(Problem(lm=tiny_lm, target_ids=reachable, prompt_length=2, seed=seed),
                                  Budget(steps=steps))
        results.append(result)
        if result.exact_match:
            break
    best = results[-1]
    assert best.exact_match, [r.metrics for r in results]
    assert tiny_lm.greedy_generate(torch.tensor([best.prompt_ids]), 3)[0].tolist() == list(reachable)
    assert best.output_ids == list(reachable) and 1 <= best.success_step <= best.steps_run
    assert best.forward_tokens > 0 and best.backward_tokens >= 0


@pytest.mark.parametrize("preset", ["reinforce", "soda-paper", "gcg"])
def test_baseline_is_deterministic_for_same_key(tiny_lm, preset):
    def run(seed):
        return fast(preset).run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3, seed=seed), Budget(steps=3))

    first, again = run(1), run(1)
    assert first.seeded_history() == again.seeded_history() and first.prompt_ids == again.prompt_ids


@pytest.mark.parametrize("preset", ["reinforce", "soda-paper", "gcg"])
def test_baseline_stops_on_the_time_budget(tiny_lm, preset):
    method, config = get_preset(preset)
    runner = get_method_class(method)(with_options(config, {**FAST[preset], "epochs": 100_000, "eval_every": 1000}))
    result = runner.run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3), Budget(seconds=0.3))
    assert 1 <= result.steps_run < 100_000 and result.wall_time_s < 5 and len(result.prompt_ids) == 3


class Recorder:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    def log(self, step, metrics):
        self.keys |= set(metrics)

    def close(self):
        return None


@pytest.mark.parametrize("preset", ["reinforce", "soda-paper", "gcg"])
def test_baseline_reports_shared_keys_and_round_trips_through_json(tiny_lm, preset):
    tracker = Recorder()
    result = fast(preset).run(Problem(lm=tiny_lm, target_ids=(7, 8), prompt_length=2), Budget(steps=2), tracker)
    assert {"eval/exact_match", "eval/lcs_ratio", "eval/token_accuracy", "eval/roundtrip_exact"} <= set(result.metrics)
    assert {"eval/lcs_ratio", "eval/best_lcs_ratio"} <= tracker.keys
    assert any(key.startswith("loss/") for key in tracker.keys)
    assert result.steps_run == 2 and len(result.history["loss/target"]) == 2
    assert Result.from_dict(json.loads(json.dumps(result.to_dict()))) == result


@pytest.mark.parametrize("method, field, bad", [
    ("reinforce", "batch_size", 0), ("reinforce", "reinforce_estimator", "vimco"),
    ("reinforce", "reinforce_baseline_beta", 1.5), ("reinforce", "reinforce_grad_variance_samples", 1),
    ("soda", "temperature", 0.0), ("soda", "soda_beta2", 1.0), ("soda", "soda_decay_rate", 1.1),
    ("soda", "soda_init_strategy", "randn"), ("gcg", "topk", 0), ("gcg", "buffer_size", -1), ("gcg", "loss", "hinge"),
])
def test_baseline_configs_build_with_defaults_and_reject_a_bad_value(method, field, bad):
    config_class = get_method_class(method).config_class
    config = config_class()
    assert config.epochs > 0 and config.eval_every > 0
    with pytest.raises(ValueError, match=field):
        dataclasses.replace(config, **{field: bad})


def test_baseline_presets_are_locked():
    config = gbda()
    assert (config.temperature, config.learnable_temperature) == (1.0, False)
    assert not config.decouple_learnable_temperature
    assert not config.stgs_hard and PRESETS["gbda"][0] == "dlmi"
    method, paper = get_preset("reinforce-paper")
    assert method == "reinforce" and paper.reinforce_estimator == "batch"
    assert paper.reinforce_use_baseline and (paper.reinforce_baseline_beta, paper.reinforce_reward_scale) == (0.9, 1.0)
    assert (paper.learning_rate, paper.batch_size, paper.epochs) == (0.1, 8, 2048)
    assert get_preset("reinforce")[1] == dataclasses.replace(paper, reinforce_estimator="per_sample",
                                                            reinforce_baseline="loo")
    soda = get_preset("soda-paper")[1]
    assert (soda.temperature, soda.learning_rate, soda.soda_beta1, soda.soda_beta2) == (0.05, 0.03, 0.9, 0.995)
    assert (soda.soda_decay_rate, soda.soda_reset_epoch, soda.soda_reinit_epoch) == (0.98, 50, 1500)
    assert (soda.soda_init_strategy, soda.soda_bias_correction) == ("zeros", False)
    nano = get_preset("gcg")[1]
    assert (nano.epochs, nano.search_width, nano.topk, nano.n_replace, nano.buffer_size) == (250, 512, 256, 1, 0)
    assert nano.filter_ids and not nano.accept_only_if_better and (nano.init_strategy, nano.init_text) == ("text", " x")
    lmi = get_preset("gcg-paper-lmi")[1]
    assert (lmi.search_width, lmi.topk, lmi.n_replace, lmi.init_strategy) == (704, 128, 1, "zeros")
    assert lmi.accept_only_if_better and lmi.loss == "margin"


# Composite methods run other methods by design; no other method may import them.
COMPOSITES = {"softtoken.methods.hybrid"}


def test_methods_never_import_each_other():
    method_modules = {cls.__module__ for cls in METHODS.values()}
    for module in method_modules - COMPOSITES:
        tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        assert not (imported & (method_modules - {module})), (module, imported & method_modules)


@pytest.mark.parametrize("preset, options", [
    ("soda-paper", {}), ("gcg", {"init_strategy": "random", "search_width": 4}), ("reinforce", {}),
])
def test_baselines_stop_at_the_forward_token_budget(tiny_lm, preset, options):
    from softtoken.methods import build_method

    method = build_method(preset=preset, options={"eval_every": 1000, **options})
    result = method.run(Problem(lm=tiny_lm, target_ids=(7, 8, 9), prompt_length=3), Budget(forward_tokens=40))
    assert result.steps_run < method.config.epochs
    assert result.forward_tokens >= 40
