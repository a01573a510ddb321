"""Token-level templates (teacher CoT text, student latent text) and START-aligned collation.

Teacher: BOS "Question: q" | steps | " The answer is" ":" " " answer EOS
Student: BOS "Question: q" | <START> <|CONTINUE|>xn <|STOP|> | " The answer is" ":" " " answer EOS
Every row is split at the alignment column (the first token after the question): the prefix is
left-padded and the rest right-padded, so all <START> tokens share one column and a batch with up
to k latent steps costs k + 2 backbone calls instead of k + (spread of suffix lengths).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import torch

from softtoken.latent.data import step_result
from softtoken.latent.tokens import ANSWER_PIECES, TokenIds, encode, prompt_ids

IGNORE = -100


@dataclass
class Example:
    ids: list[int]
    labels: list[int]
    reasoning: list[bool]  # CoT step tokens (teacher) or CONTINUE positions (student)
    target: int  # KD target position
    split: int  # alignment column
    # Per written step i, (position, token) with token the first token of its result. Student: the state fed
    # into thought i. Teacher (when asked): the token right before that result (-1 where not found).
    step_results: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Batch:
    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T)
    labels: torch.Tensor  # (B, T)
    reasoning: torch.Tensor  # (B, T) bool
    target: torch.Tensor  # (B,) KD target positions
    step_positions: torch.Tensor  # (B, m) positions of step_results, -1 where a row has fewer
    step_tokens: torch.Tensor  # (B, m) their result tokens, IGNORE where a row has fewer


@functools.lru_cache(maxsize=8)
def _answer_pieces(tokenizer: Any) -> tuple[list[int], ...]:
    return tuple(encode(tokenizer, piece) for piece in ANSWER_PIECES)


def _suffix(tokenizer: Any, answer: str, eos: int) -> tuple[list[int], int, int]:
    """Answer suffix ids and the offsets of ':' and of the token right before the digits."""
    pieces = _answer_pieces(tokenizer)
    colon = len(pieces[0])
    before_digits = colon + len(pieces[1])
    return [i for p in pieces for i in p] + encode(tokenizer, answer) + [eos], colon, before_digits


def _assemble(prefix: list[int], middle: list[int], middle_labels: list[int], suffix: tuple[list[int], int, int],
              shift: bool) -> Example:
    ids_suffix, colon, before_digits = suffix
    ids = prefix + middle + ids_suffix
    labels = [IGNORE] * len(prefix) + middle_labels + ids_suffix
    reasoning = [False] * len(prefix) + [True] * len(middle) + [False] * len(ids_suffix)
    target = len(prefix) + len(middle) + (before_digits if shift else colon)
    return Example(ids, labels, reasoning, target, len(prefix))


def teacher_example(tokenizer: Any, ids: TokenIds, row: dict, join: str, shift: bool,
                    locate_steps: bool = False) -> Example:
    steps = encode(tokenizer, join.join(row["steps"])) if row["steps"] else []
    suffix = _suffix(tokenizer, str(row["answer"]), ids.eos)
    example = _assemble(prompt_ids(tokenizer, ids, row["question"]), steps, steps, suffix, shift)
    if locate_steps:
        example.step_results = [(example.split + offset if offset >= 0 else -1, token)
                                for offset, token in _result_offsets(tokenizer, row["steps"], join, steps)]
    return example


def _result_offsets(tokenizer: Any, texts: list[str], join: str, steps: list[int]) -> list[tuple[int, int]]:
    """Per step, (offset in `steps` of the token right before its result, the result's first token); offset
    -1 where the joined text does not tokenise as its prefix does (a BPE merge across the '=')."""
    out = []
    for i, text in enumerate(texts):
        token, cut = encode(tokenizer, step_result(text))[0], text.rfind("=")
        offset = len(encode(tokenizer, join.join([*texts[:i], text[: cut + 1]]))) - 1
        found = cut >= 0 and offset + 1 < len(steps) and steps[offset + 1] == token
        out.append((offset if found else -1, token))
    return out


def student_example(tokenizer: Any, ids: TokenIds, row: dict, shift: bool, mask_latent_labels: bool) -> Example:
    n = row["num_latent"]
    block = [ids.start] + [ids.cont] * n + [ids.stop]
    labels = [IGNORE] * len(block) if mask_latent_labels else block
    example = _assemble(prompt_ids(tokenizer, ids, row["question"]), block, labels,
                        _suffix(tokenizer, str(row["answer"]), ids.eos), shift)
    example.reasoning = [token == ids.cont for token in example.ids]
    start = example.split  # the <START> column: its state feeds thought 1, thought i's state feeds thought i + 1
    example.step_results = [(start + i, encode(tokenizer, step_result(step))[0])
                            for i, step in enumerate(row["steps"][:n])]
    return example


def collate(examples: list[Example], pad: int) -> Batch:
    """Left-pad up to the alignment column, right-pad after it."""
    left = max(e.split for e in examples)
    right = max(len(e.ids) - e.split for e in examples)

    def padded(values: list, e: Example, fill) -> list:
        return [fill] * (left - e.split) + values + [fill] * (right - (len(e.ids) - e.split))

    return Batch(
        ids=torch.tensor([padded(e.ids, e, pad) for e in examples]),
        mask=torch.tensor([padded([1] * len(e.ids), e, 0) for e in examples]),
        labels=torch.tensor([padded(e.labels, e, IGNORE) for e in examples]),
        reasoning=torch.tensor([padded(e.reasoning, e, False) for e in examples]),
        target=torch.tensor([e.target + left - e.split for e in examples]),
        step_positions=_pad_rows([[p + left - e.split for p, _ in e.step_results] for e in examples], -1),
        step_tokens=_pad_rows([[t for _, t in e.step_results] for e in examples], IGNORE),
    )


def _pad_rows(rows: list[list[int]], fill: int) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [fill] * (width - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), width)
