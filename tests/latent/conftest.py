"""Tiny random Llama + offline word tokenizer shared by the latent tests."""

from __future__ import annotations

import ast
import operator
import re

import pytest
import torch

from softtoken.latent.data import SyntheticConfig, generate_synthetic
from softtoken.latent.tiny import synthetic_tokenizer, tiny_latent_model
from softtoken.latent.tokens import add_latent_tokens

# Tiny ops on a shared 2-core machine: one intra-op thread is ~6x faster than two (no spin-waiting).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    tok = synthetic_tokenizer()
    add_latent_tokens(tok)
    return tok


@pytest.fixture(scope="session")
def token_ids(tokenizer):
    return add_latent_tokens(tokenizer)


@pytest.fixture
def latent_model(tokenizer):
    return tiny_latent_model(tokenizer).eval()


@pytest.fixture(scope="session")
def rows():
    return generate_synthetic(SyntheticConfig(num_examples=64, max_steps=3, max_operand=9, seed=1))


# ----------------------------------------------------------------------------------------------
# An evaluator of the dial task's written steps that shares no code with its generator.

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


@pytest.fixture
def check_dial_row():
    return check_row


@pytest.fixture
def calculator():
    return calculate
