"""The dial task: answers checked by an evaluator that shares no code with the generator."""

from __future__ import annotations

import pytest

from softtoken.latent.data import prepare_sft_rows
from softtoken.latent.dial import DialConfig, generate_dial
from softtoken.latent.options import resolve
from softtoken.latent.tasks import generate_rows, task_config
from softtoken.latent.tiny import synthetic_tokenizer


@pytest.mark.parametrize("modulus", [10, 7])
def test_every_answer_is_what_the_written_steps_compute(modulus, check_dial_row):
    rows = generate_dial(DialConfig(num_examples=300, min_steps=1, max_steps=6, modulus=modulus, seed=4))
    for row in rows:
        check_dial_row(row, modulus)
    assert {len(row["steps"]) for row in rows} == set(range(1, 7))
    assert {row["answer"] for row in rows} == {str(d) for d in range(modulus)}


def test_the_calculator_is_independent_of_the_generator(calculator):
    calculate = calculator
    assert calculate("(4-9)%10") == 5 and calculate("(7*3)%10") == 1
    with pytest.raises(ValueError, match="not a calculator expression"):
        calculate("__import__('os')")


def test_rows_are_seeded_and_the_registry_reaches_them():
    config = {"num_examples": 20, "max_steps": 3, "seed": 2}
    assert generate_rows("dial", config) == generate_dial(DialConfig(**config))
    assert generate_rows("dial", config) != generate_rows("dial", {**config, "seed": 3})


def test_bad_task_options_name_the_value():
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        task_config("nope", {})
    with pytest.raises(ValueError, match=r"unknown task 'dial' fields \['max_operand'\]"):
        task_config("dial", {"max_operand": 3})
    with pytest.raises(ValueError, match="DialConfig.modulus must be in"):
        task_config("dial", {"modulus": 11})
    with pytest.raises(ValueError, match="DialConfig.turns must be a non-empty subset"):
        task_config("dial", {"turns": ["sideways"]})


def test_the_dial_tokenizer_covers_every_row_and_steps_survive_the_pipeline():
    tokenizer = synthetic_tokenizer("dial")
    rows = generate_dial(DialConfig(num_examples=100, max_steps=6, seed=1))
    for row in rows:
        ids = tokenizer(row["question"] + "".join(row["steps"]) + row["answer"])["input_ids"]
        assert tokenizer.unk_token_id not in ids
    prepared = prepare_sft_rows(rows, resolve("sft", "gsm8k-aug/latent_plus_1_by_1_max_7"))
    assert len(prepared) == len(rows)
    assert all(row["num_latent"] == len(row["steps"]) + 1 == row["num_steps"] + 1 for row in prepared)
