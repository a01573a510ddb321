import json
from pathlib import Path

import pytest

from softtoken.data.targets import RankKConfig, Target, TargetSet, generate_rank_k, load_targets

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


def test_generate_rank_k_writes_reference_format_with_token_ids(tiny_lm):
    data = generate_rank_k(tiny_lm, RankKConfig(k_min=1, k_max=6, k_step=5, num_samples=2, max_length=5))
    assert data["metadata"]["k_values"] == [1, 6]
    assert [s["id"] for s in data["samples"]] == ["k1_sample0", "k1_sample1", "k6_sample0", "k6_sample1"]
    for sample in data["samples"]:
        assert {"id", "k_target", "text", "token_ranks", "token_probabilities", "avg_rank", "length",
                "perplexity", "token_ids"} <= set(sample)
        assert sample["length"] == len(sample["token_ids"]) <= 5
        assert all(0 <= i < len(tiny_lm.tokenizer) for i in sample["token_ids"])
        assert sample["text"] == tiny_lm.tokenizer.decode(sample["token_ids"], skip_special_tokens=True)
    assert set(data["k_summaries"]) == {"1", "6"}


def test_generate_rank_k_is_deterministic_for_same_seed(tiny_lm):
    config = RankKConfig(k_max=11, num_samples=2, max_length=6, seed=7)
    first, second = generate_rank_k(tiny_lm, config), generate_rank_k(tiny_lm, config)
    assert [s["token_ids"] for s in first["samples"]] == [s["token_ids"] for s in second["samples"]]


def test_generate_rank_k_without_noise_at_k1_picks_the_most_likely_token(tiny_lm):
    import torch

    data = generate_rank_k(tiny_lm, RankKConfig(k_max=1, num_samples=1, max_length=4, noise_factor=0.0))
    sample = data["samples"][0]
    assert sample["token_ranks"] == [1] * len(sample["token_ranks"])
    ids = [tiny_lm.tokenizer.bos_token_id] + sample["token_ids"]
    for position, token in enumerate(sample["token_ids"], start=1):
        logits = tiny_lm.model(input_ids=torch.tensor([ids[:position]])).logits[0, -1, :len(tiny_lm.tokenizer)]
        assert int(logits.argmax()) == token


@pytest.mark.parametrize("field, value", [("k_min", 0), ("k_step", 0), ("num_samples", 0), ("max_length", 0),
                                          ("noise_factor", -1.0)])
def test_rank_k_config_rejects_bad_value_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        RankKConfig(**{field: value})


def test_load_targets_prefers_stored_ids_over_retokenising(tmp_path, tiny_lm):
    data = generate_rank_k(tiny_lm, RankKConfig(k_max=1, num_samples=2, max_length=4))
    path = tmp_path / "set_without_extension"
    path.write_text(json.dumps(data))
    targets = load_targets(path)
    assert [t.k for t in targets.targets] == [1, 1]
    assert [list(t.resolve_ids(tiny_lm)) for t in targets.targets] == [s["token_ids"] for s in data["samples"]]


def test_load_targets_reads_jsonl_and_plain_text(tmp_path, tiny_lm):
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"id": "a", "text": "w1 w2", "k": 6}\n\n{"text": "w3", "ids": [7]}\n')
    text = tmp_path / "t.txt"
    text.write_text("w4 w5\n\n w6\n")
    from_jsonl, from_text = load_targets(jsonl), load_targets(text)
    assert [(t.id, t.k, t.resolve_ids(tiny_lm)) for t in from_jsonl.targets] == [("a", 6, (5, 6)), ("line3", None, (7,))]
    assert [(t.id, t.text) for t in from_text.targets] == [("line1", "w4 w5"), ("line3", " w6")]


def test_target_set_rejects_duplicate_ids():
    with pytest.raises(ValueError, match="duplicate target ids"):
        TargetSet(targets=(Target(id="a", text="x"), Target(id="a", text="y")))


def test_target_set_select_keeps_named_targets_in_order():
    targets = TargetSet(targets=tuple(Target(id=str(i), text="x") for i in range(4)))
    assert [t.id for t in targets.select(["2", "0"]).targets] == ["2", "0"]
    assert [t.id for t in targets.select(limit=2).targets] == ["0", "1"]
    with pytest.raises(ValueError, match="not in the dataset"):
        targets.select(["9"])


@pytest.mark.skipif(not SHARED.is_dir(), reason="reference data files not present")
def test_load_targets_reads_reference_files_unchanged():
    lmi = load_targets(SHARED / "smollm2-135m-base_diverse_targets_k1-5-25_x5_seed42_TL20_NF1")
    assert len(lmi) == 25 and sorted({t.k for t in lmi.targets}) == [1, 6, 11, 16, 21]
    assert all(t.ids is None and t.text for t in lmi.targets)  # text only: re-tokenised with the model in use
    soda = load_targets(SHARED / "soda_smollm2-135m_random_SEED42_PL10_TL20_N10.json")
    assert len(soda) == 10 and all(len(t.prompt_ids) == 10 for t in soda.targets)
