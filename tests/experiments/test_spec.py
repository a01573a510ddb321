import pytest

from softtoken.experiments.spec import (
    BudgetSpec,
    SpecError,
    config_hash,
    parse_spec,
    resolve_points,
    run_key,
    run_seed,
)


def test_parse_spec_lists_every_structural_error_at_once(tmp_path):
    data = {"dataset": {"path": "x", "generate": {}}, "bogus": 1, "budget": {"steps": 0},
            "methods": [{"method": "dlmi", "grid": {"temperature": 1.0}}, 42]}
    with pytest.raises(SpecError) as info:
        parse_spec(data, tmp_path)
    text = str(info.value)
    assert "bogus" in text and "exactly one of path, generate" in text and "budget.steps" in text
    assert "grid values must be lists" in text and "methods[1]" in text
    assert len(info.value.errors) == 5


def test_resolve_points_lists_every_invalid_grid_point(tmp_path):
    spec = parse_spec({
        "dataset": "t.txt",
        "methods": [
            {"label": "A", "method": "dlmi", "grid": {"learnable_temperature": [True, False],
                                                       "decouple_learnable_temperature": [True, False]}},
            {"label": "B", "method": "dlmi", "options": {"bogus_option": 1}},
            {"label": "C", "preset": "no-such-preset"},
        ],
    }, tmp_path)
    with pytest.raises(SpecError) as info:
        resolve_points(spec)
    errors = info.value.errors
    assert len(errors) == 3
    assert errors[0].startswith("A {'decouple_learnable_temperature': True, 'learnable_temperature': False}")
    assert "bogus_option" in errors[1] and "unknown preset" in errors[2]


def test_grid_expands_to_the_cartesian_product_with_distinct_hashes(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "methods": [
        {"method": "dlmi", "grid": {"temperature": [1.0, 100.0], "batch_size": [2, 4, 8]}}]}, tmp_path)
    points = resolve_points(spec)
    assert len(points) == 6
    assert len({p.config_hash for p in points}) == 6
    assert {(p.config["temperature"], p.config["batch_size"]) for p in points} == {
        (t, b) for t in (1.0, 100.0) for b in (2, 4, 8)}


def test_config_hash_covers_config_prompt_length_budget_and_model():
    base = {"prompt_length": 10, "budget": BudgetSpec(steps=5), "model": None}
    reference = config_hash("dlmi", {"temperature": 1.0}, **base)
    assert reference == config_hash("dlmi", {"temperature": 1.0}, **base)
    assert reference != config_hash("dlmi", {"temperature": 2.0}, **base)
    assert reference != config_hash("dlmi", {"temperature": 1.0}, **{**base, "prompt_length": 11})
    assert reference != config_hash("dlmi", {"temperature": 1.0}, **{**base, "budget": BudgetSpec(steps=6)})
    assert reference != config_hash("dlmi", {"temperature": 1.0}, **{**base, "model": "m"})


def test_a_vocabulary_limit_enters_the_config_hash_and_no_limit_leaves_it_unchanged(tmp_path):
    base = {"prompt_length": 10, "budget": BudgetSpec(steps=5), "model": None}

    def point_hash(**limits):
        spec = parse_spec({"dataset": "t.txt", "prompt_length": 10, "budget": {"steps": 5},
                           "methods": [{"method": "dlmi", "options": {"temperature": 1.0}}], **limits}, tmp_path)
        return resolve_points(spec)[0].config_hash

    hashes = [point_hash(), point_hash(allowed="decodable"), point_hash(allowed="words"),
              point_hash(banned=["Paris"])]
    config = resolve_points(parse_spec({"dataset": "t.txt", "methods": [
        {"method": "dlmi", "options": {"temperature": 1.0}}]}, tmp_path))[0].config
    assert hashes[0] == config_hash("dlmi", dict(config), **base)
    assert len(set(hashes)) == 4
    assert hashes[1] == config_hash("dlmi", dict(config), **base,
                                    vocabulary={"allowed": "decodable", "banned": []})


@pytest.mark.parametrize("limits, message", [
    ({"allowed": "no-such-class"}, "allowed must be one of"), ({"allowed": 3}, "allowed"),
    ({"banned": "Paris"}, "banned"), ({"banned": [""]}, "banned must be a list of non-empty texts"),
])
def test_a_bad_vocabulary_limit_is_a_spec_error_naming_it(tmp_path, limits, message):
    with pytest.raises(SpecError, match=message):
        parse_spec({"dataset": "t.txt", "methods": ["dlmi"], **limits}, tmp_path)


def test_run_seed_depends_only_on_the_key():
    key = run_key("dlmi", "abc", 10, "k1_sample0")
    assert key == "dlmi/abc/10/k1_sample0"
    assert run_seed(key) == run_seed("dlmi/abc/10/k1_sample0")
    assert run_seed(key) != run_seed(run_key("dlmi", "abc", 20, "k1_sample0"))
    assert 0 <= run_seed(key) < 2**31


def test_method_seeds_and_budget_override_the_spec(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "seeds": [1], "budget": {"steps": 3}, "methods": [
        {"label": "a", "method": "dlmi"},
        {"label": "b", "method": "dlmi", "seeds": [5, 6], "budget": {"seconds": 2}}]}, tmp_path)
    first, second = resolve_points(spec)
    assert (first.seeds, first.budget) == ((1,), BudgetSpec(steps=3))
    assert (second.seeds, second.budget) == ((5, 6), BudgetSpec(seconds=2))


def test_dataset_path_is_relative_to_the_spec_file(tmp_path):
    spec = parse_spec({"dataset": "sub/t.txt", "methods": [{"method": "dlmi"}]}, tmp_path)
    assert spec.dataset.resolved_path == tmp_path / "sub" / "t.txt"


def test_method_entry_may_be_a_bare_name_of_a_method_or_a_preset(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "methods": ["dlmi-paper", "dlmi", {"method": "dlmi-paper-free"}]},
                      tmp_path)
    points = resolve_points(spec)
    assert [(p.label, p.method, p.preset) for p in points] == [
        ("dlmi-paper", "dlmi", "dlmi-paper"), ("dlmi", "dlmi", None), ("dlmi-paper-free", "dlmi", "dlmi-paper-free")]
    assert points[2].config["teacher_forcing"] is False


def test_forward_token_budget_is_parsed_and_validated(tmp_path):
    spec = parse_spec({"dataset": "t.txt", "budget": {"forward_tokens": 500}, "methods": [{"method": "dlmi"}]},
                      tmp_path)
    assert spec.budget.forward_tokens == 500
    with pytest.raises(SpecError, match="forward_tokens"):
        parse_spec({"dataset": "t.txt", "budget": {"forward_tokens": 0}, "methods": [{"method": "dlmi"}]}, tmp_path)


def _run_seeds(spec_data, tmp_path):
    """(label, seed, target id) -> run seed of every task of the spec, over the targets t1 and t2."""
    from softtoken.data.targets import Target, TargetSet
    from softtoken.experiments.runner import expand_tasks

    spec = parse_spec(spec_data, tmp_path)
    targets = TargetSet(targets=tuple(Target(id=name, text=name) for name in ("t1", "t2")))
    return {(task.label, task.seed, task.target["id"]): task.run_seed
            for task in expand_tasks(spec, resolve_points(spec), targets)}


def test_paired_seeds_give_every_row_the_same_run_seed_for_a_target_and_seed(tmp_path):
    rows = [{"label": "a", "method": "dlmi"}, {"label": "b", "method": "dlmi", "options": {"temperature": 2.0}}]
    base = {"dataset": "t.txt", "seeds": [1, 2], "methods": rows}
    paired, unpaired = _run_seeds({**base, "paired_seeds": True}, tmp_path), _run_seeds(base, tmp_path)
    for seed in (1, 2):
        for target in ("t1", "t2"):
            assert paired["a", seed, target] == paired["b", seed, target]
            assert unpaired["a", seed, target] != unpaired["b", seed, target]
    assert len({paired["a", seed, target] for seed in (1, 2) for target in ("t1", "t2")}) == 4
    hashes = [resolve_points(parse_spec({**base, **extra}, tmp_path))[0].config_hash
              for extra in ({}, {"paired_seeds": False}, {"paired_seeds": True})]
    assert hashes[0] == hashes[1] != hashes[2]  # a paired run is another run; unpaired keys stay as they were


def test_paired_seeds_must_be_a_bool(tmp_path):
    with pytest.raises(SpecError, match="paired_seeds"):
        parse_spec({"dataset": "t.txt", "methods": ["dlmi"], "paired_seeds": "true"}, tmp_path)
