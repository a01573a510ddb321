import re

import pytest

from softtoken.latent import options as opts
from softtoken.latent.batching import collate, student_example, teacher_example
from softtoken.latent.data import (
    SyntheticConfig,
    generate_synthetic,
    latent_count,
    load_rows,
    prepare_rl_rows,
    prepare_sft_rows,
    seeded_slice,
    write_jsonl,
)
from softtoken.latent.tokens import PROMPT_PREFIX, prompt_ids

STEP = re.compile(r"<<([\d+\-*]+)=(\d+)>>")


def test_synthetic_is_deterministic_and_seed_dependent():
    config = SyntheticConfig(num_examples=20, seed=3)
    assert generate_synthetic(config) == generate_synthetic(config)
    assert generate_synthetic(config) != generate_synthetic(SyntheticConfig(num_examples=20, seed=4))


def test_synthetic_steps_are_correct_equations_ending_in_the_answer():
    for row in generate_synthetic(SyntheticConfig(num_examples=200, seed=5)):
        values = []
        for step in row["steps"]:
            expression, result = STEP.fullmatch(step).groups()
            assert eval(expression) == int(result) >= 0  # noqa: S307 - our own digits and operators
            values.append(int(result))
        assert str(values[-1]) == row["answer"]
        assert row["question"].count(".") == len(row["steps"]) + 1  # one sentence per step after the first


def test_synthetic_step_count_spans_the_configured_range():
    rows = generate_synthetic(SyntheticConfig(num_examples=300, min_steps=1, max_steps=4, seed=6))
    assert {len(r["steps"]) for r in rows} == {1, 2, 3, 4}


def test_seeded_slices_of_sft_and_rl_are_disjoint_and_cover():
    rows = [{"question": str(i), "steps": [], "answer": str(i)} for i in range(100)]
    head, tail = seeded_slice(rows, 0.85, tail=False), seeded_slice(rows, 0.15, tail=True)
    assert len(head) == 85 and len(tail) == 15
    assert {r["question"] for r in head}.isdisjoint(r["question"] for r in tail)


@pytest.mark.parametrize(("steps", "expected"), [(1, 6), (2, 7), (5, 10), (8, 10)])
def test_latent_count_plus_5_by_1_max_10(steps, expected):
    assert latent_count(steps, 1, 5, 0, 10) == expected


def test_prepare_sft_rows_applies_schedule_and_drops_last_step():
    rows = generate_synthetic(SyntheticConfig(num_examples=50, seed=7))
    config = opts.resolve("sft", "remove_last_reasoning_step/latent_plus_1_by_1_max_4")
    for row in prepare_sft_rows(rows, config):
        assert len(row["steps"]) == row["num_steps"] - 1
        assert row["num_latent"] == min(4, row["num_steps"] + 1)


def test_prepare_filters_bad_answers_but_rl_keeps_negatives():
    rows = [{"question": "q", "steps": [], "answer": a} for a in ("3", "-2", "inf", "abc", "1,200")]
    sft = prepare_sft_rows(rows, opts.resolve("sft", "remove_negative_answers"))
    assert sorted(r["answer"] for r in sft) == ["1,200", "3"]
    assert sorted(r["answer"] for r in prepare_rl_rows(rows, opts.resolve("grpo", ""))) == ["-2", "1,200", "3"]


def test_load_rows_reads_jsonl_directory(tmp_path):
    rows = generate_synthetic(SyntheticConfig(num_examples=5, seed=8))
    write_jsonl(rows, tmp_path / "validation.jsonl")
    assert load_rows(str(tmp_path), "gsm8k-aug", "validation") == rows
    with pytest.raises(ValueError, match="test.jsonl"):
        load_rows(str(tmp_path), "gsm8k-aug", "test")


def test_student_and_eval_prompts_share_the_prefix(tokenizer, token_ids, rows):
    row = {**rows[0], "num_latent": 2}
    student = student_example(tokenizer, token_ids, row, shift=True, mask_latent_labels=False)
    prompt = prompt_ids(tokenizer, token_ids, row["question"])
    assert student.ids[: len(prompt) + 1] == prompt + [token_ids.start]
    assert tokenizer.decode(prompt[1:]).startswith(PROMPT_PREFIX)


def test_collate_aligns_start_column(tokenizer, token_ids, rows):
    examples = [student_example(tokenizer, token_ids, {**r, "num_latent": 1 + i % 3}, True, False)
                for i, r in enumerate(rows[:6])]
    batch = collate(examples, token_ids.pad)
    columns = (batch.ids == token_ids.start).nonzero()[:, 1]
    assert columns.unique().numel() == 1 and len(columns) == 6


def test_teacher_target_is_the_token_before_the_answer_digits(tokenizer, token_ids, rows):
    for row in rows[:10]:
        example = teacher_example(tokenizer, token_ids, row, "", shift=True)
        assert tokenizer.decode(example.ids[example.target]) == " "
        digits = tokenizer.decode(example.ids[example.target + 1 : -1])
        assert digits == row["answer"]
        unshifted = teacher_example(tokenizer, token_ids, row, "", shift=False)
        assert tokenizer.decode(unshifted.ids[unshifted.target]) == ":"


def test_mask_latent_reasoning_labels_hides_block_labels_only(tokenizer, token_ids, rows):
    row = {**rows[0], "num_latent": 3}
    plain = student_example(tokenizer, token_ids, row, shift=True, mask_latent_labels=False)
    masked = student_example(tokenizer, token_ids, row, shift=True, mask_latent_labels=True)
    block = {i for i, t in enumerate(plain.ids) if t in token_ids.latent}
    assert len(block) == 5 and all(masked.labels[i] == -100 and plain.labels[i] != -100 for i in block)
    assert [label for i, label in enumerate(masked.labels) if i not in block] == \
        [label for i, label in enumerate(plain.labels) if i not in block]


def test_nl_variant_encodes_without_unknown_words(tokenizer, token_ids):
    rows = generate_synthetic(SyntheticConfig(num_examples=30, natural_language=True, seed=9))
    for row in rows:
        example = teacher_example(tokenizer, token_ids, row, " ", shift=True)
        assert tokenizer.unk_token_id not in example.ids
        assert " ".join(row["steps"]) in tokenizer.decode(example.ids)


def test_load_rows_from_hub_needs_datasets():
    import importlib.util

    if importlib.util.find_spec("datasets") is not None:
        pytest.skip("datasets is installed; the hub path would try the network")
    with pytest.raises(ValueError, match="pip install datasets"):
        load_rows(None, "gsm8k-aug", "train")


@pytest.mark.parametrize(("text", "message"), [
    ('[{"question": "q", "steps": [], "answer": "1"}, {"question": "q", "steps": []}]',
     r"train\.json row 2: missing key 'answer'"),
    ('{"question": "q"}', r"train\.json must hold a JSON list of rows, got dict"),
    ('[{"question": "q",\n "steps": [] "answer": "1"}]', r"train\.json line 2: not valid JSON"),
    ('[["q", [], "1"]]', r"train\.json row 1: expected an object with keys question, steps, answer, got list"),
    ('[{"question": "q", "steps": [], "answer": true}]', r"train\.json row 1: 'answer' must be a string or a number"),
])
def test_load_rows_names_file_and_row_of_a_bad_json_file(tmp_path, text, message):
    (tmp_path / "train.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_rows(str(tmp_path), "gsm8k-aug", "train")


def test_load_rows_counts_lines_past_blank_ones(tmp_path):
    good = '{"question": "q", "steps": ["<<1+1=2>>"], "answer": "2"}'
    (tmp_path / "train.jsonl").write_text(f"{good}\n\n{good}\n{{}}\n")
    with pytest.raises(ValueError, match=r"train\.jsonl line 4: missing key 'question'"):
        load_rows(str(tmp_path), "gsm8k-aug", "train")


def test_synthetic_config_rejects_wrong_types():
    with pytest.raises(ValueError, match="SyntheticConfig.num_examples must be int, got '10'"):
        SyntheticConfig(num_examples="10")
