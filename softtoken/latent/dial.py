"""The dial task: sequential state tracking in the GSM8K-Aug schema, where the answer needs the steps.

A dial shows a digit; each sentence turns it (up b, down c, or times f), wrapping modulo `modulus`.
Every step is easy on its own, `<<(7+5)%10=2>>`, but the answer is the composition of all of them,
which a shallow model cannot read off the question in one pass. A calculator that evaluates each
step's expression checks the chain, so the rows stay in the schema of `whyNLP/gsm8k-aug`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softtoken.configcheck import check_types, check_values
from softtoken.latent.data import draw_int

OPENING = "The dial shows {value}."
TURNS = {  # one sentence and one calculator step per turn
    "up": (" Turn it up {operand}.", "({value}+{operand})"),
    "down": (" Turn it down {operand}.", "({value}-{operand})"),
    "times": (" Multiply it by {operand}.", "({value}*{operand})"),
}
CLOSING = " What does the dial show?"
TIMES_OPERANDS = (2, 3)


def dial_texts() -> list[str]:
    """Every sentence of the task once: the word inventory a word tokenizer needs."""
    fill = {"value": 4, "operand": 3}
    steps = [f"<<{expression.format(**fill)}%10=2>>" for _, expression in TURNS.values()]
    return ["".join([OPENING.format(**fill), *(s.format(**fill) for s, _ in TURNS.values()), CLOSING, *steps])]


@dataclass(frozen=True, kw_only=True)
class DialConfig:
    """Seeded dial problems; difficulty is the number of turns S, uniform on [min_steps, max_steps]."""

    num_examples: int = 1000  # >= 1
    min_steps: int = 1  # >= 1
    max_steps: int = 4  # >= min_steps
    modulus: int = 10  # in [2, 10]: the dial's digits, so every value is one token
    turns: tuple[str, ...] = ("up", "down", "times")  # a non-empty subset of TURNS
    seed: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        checks = [
            (self.num_examples >= 1, "num_examples", ">= 1"),
            (self.min_steps >= 1, "min_steps", ">= 1"),
            (self.max_steps >= self.min_steps, "max_steps", ">= min_steps"),
            (2 <= self.modulus <= 10, "modulus", "in [2, 10]"),
            (bool(self.turns) and set(self.turns) <= set(TURNS), "turns", f"a non-empty subset of {sorted(TURNS)}"),
        ]
        check_values(self, checks, "DialConfig.")


def _turn(value: int, config: DialConfig, gen: torch.Generator) -> tuple[str, str, int]:
    """(sentence, calculator step, new value) for one random turn."""
    kind = config.turns[draw_int(gen, 0, len(config.turns) - 1)]
    if kind == "times":
        operand = TIMES_OPERANDS[draw_int(gen, 0, len(TIMES_OPERANDS) - 1)]
    else:
        operand = draw_int(gen, 1, config.modulus - 1)
    sentence, expression = TURNS[kind]
    expression = expression.format(value=value, operand=operand)
    result = eval_turn(kind, value, operand, config.modulus)
    return sentence.format(operand=operand), f"<<{expression}%{config.modulus}={result}>>", result


def eval_turn(kind: str, value: int, operand: int, modulus: int) -> int:
    moved = {"up": value + operand, "down": value - operand, "times": value * operand}[kind]
    return moved % modulus


def dial_row(config: DialConfig, gen: torch.Generator) -> dict:
    value = draw_int(gen, 0, config.modulus - 1)
    question, steps = OPENING.format(value=value), []
    for _ in range(draw_int(gen, config.min_steps, config.max_steps)):
        sentence, step, value = _turn(value, config, gen)
        question += sentence
        steps.append(step)
    return {"question": question + CLOSING, "steps": steps, "answer": str(value)}


def generate_dial(config: DialConfig) -> list[dict]:
    gen = torch.Generator().manual_seed(config.seed)
    return [dial_row(config, gen) for _ in range(config.num_examples)]
