"""The Python entry points in context: a loaded Hugging Face model, many targets, one universal prompt."""

import json

import pytest

import softtoken

SEARCH = {"preset": "gcg", "search_width": 16, "topk": 8, "init_text": " w5", "eval_every": 1}


def test_invert_takes_a_loaded_model_with_its_tokenizer_and_a_context(tiny_model, tiny_tokenizer):
    result = softtoken.invert("w5 w6", model=tiny_model, tokenizer=tiny_tokenizer, prefix="w1 ", prompt_length=2,
                              steps=2, **SEARCH)
    assert result.context["prefix_ids"] == [5] and result.target_ids == [9, 10]
    assert not any(p.requires_grad for p in tiny_model.parameters())  # frozen: only the prompt is optimised


def test_a_loaded_model_without_its_tokenizer_is_refused(tiny_model):
    with pytest.raises(ValueError, match="needs its tokenizer"):
        softtoken.invert("w5", model=tiny_model, steps=1, **SEARCH)


def test_invert_many_writes_each_target_and_resumes(model_dir, tmp_path):
    first = softtoken.invert_many(["w5 w6", "w7"], model=str(model_dir), out=tmp_path, prompt_length=2, steps=2,
                                  **SEARCH)
    again = softtoken.invert_many(["w5 w6", "w7"], model=str(model_dir), out=tmp_path, prompt_length=2, steps=2,
                                  **SEARCH)
    assert [r.target_ids for r in first] == [[9, 10], [11]]
    assert [r.prompt_ids for r in again] == [r.prompt_ids for r in first]  # read back, not rerun
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2
    assert json.loads((tmp_path / "run.json").read_text())["method"] == "gcg"


def test_invert_universal_reports_each_target(model_dir):
    result = softtoken.invert_universal(["w5 w6", "w7"], model=str(model_dir), prefix="w1 ", prompt_length=2,
                                        steps=2, **SEARCH)
    assert [entry["target_text"] for entry in result.metrics["eval/targets"]] == ["w5 w6", "w7"]
    assert [t["prefix_ids"] for t in result.context["universal"]] == [[5], [5]]
