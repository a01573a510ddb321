import dataclasses

import pytest

from softtoken.methods import GCG, ADCConfig, Budget, Problem, RelaxThenSearch, RelaxThenSearchConfig
from softtoken.methods.adc import ADC
from softtoken.methods.presets import get_preset


def small_config(relax=None, **overrides) -> RelaxThenSearchConfig:
    config = RelaxThenSearchConfig(relax_steps=3, epochs=2)
    config = dataclasses.replace(
        config, relax=dataclasses.replace(relax or config.relax, batch_size=2),
        search=dataclasses.replace(config.search, search_width=8, topk=4, eval_every=1))
    return dataclasses.replace(config, **overrides)


@pytest.mark.parametrize("relax", [None, ADCConfig(eval_every=1)], ids=["dlmi", "adc"])
def test_relax_then_search_seeds_gcg_with_the_relaxed_best_prompt(tiny_lm, monkeypatch, relax):
    seen = {}
    original = GCG.run

    def spy(self, problem, budget=None, tracker=None, *, initial=None):
        seen["initial"], seen["budget"] = initial, budget
        return original(self, problem, budget, tracker, initial=initial)

    monkeypatch.setattr(GCG, "run", spy)
    problem = Problem(lm=tiny_lm, target_ids=(40, 41, 42, 43), prompt_length=3, seed=0)
    result = RelaxThenSearch(small_config(relax)).run(problem, Budget(steps=2))
    relaxed = RelaxThenSearch(small_config(relax, relax_fraction=0.0)).run(problem, Budget(steps=2))
    assert tiny_lm.to_model_ids(seen["initial"]).tolist() == relaxed.prompt_ids
    assert seen["budget"].steps == 2 and result.method == "relax-then-search"
    assert result.steps_run == 3 + len(result.history["loss/target"])
    assert any(key.startswith("relax/") for key in result.history)
    assert result.forward_tokens > relaxed.forward_tokens


def test_relax_then_search_splits_a_time_budget(tiny_lm, monkeypatch):
    seen = []
    original = GCG.run

    def spy(self, problem, budget=None, tracker=None, *, initial=None):
        seen.append(budget)
        return original(self, problem, budget, tracker, initial=initial)

    monkeypatch.setattr(GCG, "run", spy)
    problem = Problem(lm=tiny_lm, target_ids=(40, 41, 42, 43), prompt_length=3, seed=0)
    result = RelaxThenSearch(small_config(epochs=10**6)).run(problem, Budget(seconds=1.0, steps=10**6))
    assert seen and 0 < seen[0].seconds <= 0.75 and result.wall_time_s < 3.0


def test_relax_then_search_rejects_a_full_relaxed_share():
    with pytest.raises(ValueError, match="relax_fraction"):
        RelaxThenSearchConfig(relax_fraction=1.0)


def test_winner_presets_are_locked():
    method, fast = get_preset("gcg-fast")
    assert method == "gcg" and (fast.search_width, fast.topk, fast.n_replace, fast.candidate_batch_size) == (64, 32, 1, 64)
    assert fast.distinct_swaps and fast.compute_dtype == "auto" and fast.filter_ids and fast.init_text == " x"
    method, hybrid = get_preset("relax-then-gcg")
    assert method == "relax-then-search" and hybrid.relax_fraction == 0.3 and hybrid.search == fast
    relax = hybrid.relax
    assert relax.stgs_hard and relax.score_hard_samples and relax.temperature == 1.0
    assert not relax.learnable_temperature and relax.compute_dtype == "auto"


def test_relax_then_search_runs_the_relaxed_phase_with_the_method_of_its_config(tiny_lm, monkeypatch):
    ran = []
    original = ADC.run

    def spy(self, problem, budget=None, tracker=None):
        ran.append(self.config)
        return original(self, problem, budget, tracker)

    monkeypatch.setattr(ADC, "run", spy)
    config = small_config(ADCConfig(eval_every=1))
    result = RelaxThenSearch(config).run(Problem(lm=tiny_lm, target_ids=(40, 41), prompt_length=2, seed=0),
                                         Budget(steps=2))
    assert ran == [config.relax] and "relax/relax/support_mean" in result.history


def test_adc_then_gcg_preset_is_adc_polish_then_gcg_fast_for_the_last_15_percent():
    method, config = get_preset("adc-then-gcg")
    assert method == "relax-then-search" and config.relax_fraction == 0.85
    assert config.relax == get_preset("adc-polish")[1] and config.search == get_preset("gcg-fast")[1]
