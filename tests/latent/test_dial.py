"""The dial task: answers checked by an evaluator that shares no code with the generator."""

from __future__ import annotations

import ast
import operator
import re

import pytest

from softtoken.latent.data import prepare_sft_rows
from softtoken.latent.dial import DialConfig, generate_dial
from softtoken.latent.options import resolve
from softtoken.latent.tasks import generate_rows, task_config
from softtoken.latent.tiny import synthetic_tokenizer

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod}
_STEP = re.compile(r"<<(.+)=(-?\d+)>>")
_SENTENCE = {r"Turn it up (\d)": "+", r"Turn it down (\d)": "-", r"Multiply it by (\d)": "*"}


def calculate(expression: str) -> int:
    """A calculator for + - * % on integers, on the parse tree (no eval)."""

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"not a calculator expression: {expression!r}")

    return walk(ast.parse(expression, mode="eval").body)


def read_question(question: str) -> tuple[int, list[tuple[str, int]]]:
    """The start digit and the (operator, operand) turns, read from the question's words."""
    start = int(re.match(r"The dial shows (\d)\.", question).group(1))
    turns = []
    for sentence in question.split(". ")[1:]:
        for pattern, op in _SENTENCE.items():
            found = re.match(pattern, sentence)
            if found:
                turns.append((op, int(found.group(1))))
    return start, turns


def check_row(row: dict, modulus: int) -> None:
    """Every written step is right, each starts from the last result, and the answer is the last one."""
    value, turns = read_question(row["question"])
    assert len(turns) == len(row["steps"]) >= 1
    for (op, operand), step in zip(turns, row["steps"], strict=True):
        expression, written = _STEP.fullmatch(step).groups()
        assert expression == f"({value}{op}{operand})%{modulus}"
        assert calculate(expression) == int(written)
        value = int(written)
    assert row["answer"] == str(value)


@pytest.mark.parametrize("modulus", [10, 7])
def test_every_answer_is_what_the_written_steps_compute(modulus):
    rows = generate_dial(DialConfig(num_examples=300, min_steps=1, max_steps=6, modulus=modulus, seed=4))
    for row in rows:
        check_row(row, modulus)
    assert {len(row["steps"]) for row in rows} == set(range(1, 7))
    assert {row["answer"] for row in rows} == {str(d) for d in range(modulus)}


def test_the_calculator_is_independent_of_the_generator():
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
