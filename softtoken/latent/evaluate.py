"""Greedy evaluation on token ids: accuracy and reasoning length.

Counting (stated once, used everywhere): in latent mode the reasoning length is the number of
<START>, <|CONTINUE|> and <|STOP|> tokens in prompt + completion, i.e. k + 2 for k latent steps (the
paper's "total reasoning length"); `latent_steps` is k alone. In CoT mode it is the number of tokens
between the prompt and the answer prefix " The answer is: " (0 for No-CoT). A completion without the
answer prefix is bad format and counts as wrong; the denominator is every evaluated row.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from softtoken.latent.data import find_number
from softtoken.latent.generation import generate
from softtoken.latent.model import LatentLM
from softtoken.latent.options import EvalConfig
from softtoken.latent.precision import bf16_autocast
from softtoken.latent.tokens import TokenIds, answer_prefix_ids, prompt_ids

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    format_ok: bool
    correct: bool
    length: int  # see the module docstring
    latent_steps: int  # CONTINUE count in prompt + completion


def _find(sequence: list[int], pattern: list[int]) -> list[int]:
    width = len(pattern)
    return [i for i in range(len(sequence) - width + 1) if sequence[i : i + width] == pattern]


def score(prompt: list[int], completion: list[int], label: str, *, tokenizer: Any, ids: TokenIds,
          latent: bool, require_eos: bool) -> Scored:
    """Format, correctness and length of one completion, computed on ids."""
    latent_ids = {ids.start, ids.cont, ids.stop}
    full = prompt + completion
    steps = sum(token == ids.cont for token in full)
    has_eos = bool(completion) and completion[-1] == ids.eos
    body = completion[:-1] if has_eos else completion
    prefix = answer_prefix_ids(tokenizer)
    hits = _find(body, prefix)
    before = body[: hits[0]] if hits else body
    if latent:
        format_ok = len(hits) == 1 and all(t in latent_ids for t in before)
        length = sum(token in latent_ids for token in full)
    else:
        format_ok = len(hits) == 1
        length = len(before)
    format_ok = format_ok and (has_eos or not require_eos)
    value = find_number(tokenizer.decode(body[hits[0] + len(prefix) :])) if hits else None
    correct = format_ok and value is not None and abs(value - float(str(label).replace(",", ""))) < 1e-6
    return Scored(format_ok, correct, length, steps)


def eval_prompt(tokenizer: Any, ids: TokenIds, question: str, config: EvalConfig) -> list[int]:
    """The shared prompt, plus <START> (and a fixed block when the count is overridden)."""
    prompt = prompt_ids(tokenizer, ids, question)
    if not config.latent_thinking:
        return prompt
    if config.thought_count_override is None:
        return prompt + [ids.start]
    return prompt + [ids.start] + [ids.cont] * config.thought_count_override + [ids.stop]


@dataclass
class EvalResult:
    n: int
    accuracy: float
    bad_format: int
    truncated: int
    length_mean: float
    length_std: float  # population std
    length_max: int
    latent_steps_mean: float
    lengths: list[int]
    correct: list[bool]
    latent_steps: list[int]  # per row, as `Scored.latent_steps`

    def summary(self) -> dict[str, float]:
        data = asdict(self)
        return {f"eval/{k}": v for k, v in data.items() if k not in ("lengths", "correct", "latent_steps")}


def evaluate(model: LatentLM, tokenizer: Any, rows: list[dict], config: EvalConfig) -> EvalResult:
    rows = rows[: config.max_examples] if config.max_examples else rows
    was_training = model.training
    model.eval()
    scored, truncated = [], 0
    for start in range(0, len(rows), config.batch_size):
        chunk = rows[start : start + config.batch_size]
        prompts = [eval_prompt(tokenizer, model.ids, r["question"], config) for r in chunk]
        with bf16_autocast(model, config.autocast_bf16):
            out = generate(model, prompts, max_new_tokens=config.max_new_tokens,
                           max_latent_steps=model.settings.max_latent_steps)
        truncated += sum(out.truncated)
        scored += [score(p, c, r["answer"], tokenizer=tokenizer, ids=model.ids, latent=config.latent_thinking,
                         require_eos=False) for p, c, r in zip(prompts, out.completions, chunk, strict=True)]
    model.train(was_training)
    lengths = [s.length for s in scored]
    return EvalResult(
        n=len(scored), accuracy=sum(s.correct for s in scored) / max(len(scored), 1),
        bad_format=sum(not s.format_ok for s in scored), truncated=truncated,
        length_mean=statistics.fmean(lengths) if lengths else 0.0,
        length_std=statistics.pstdev(lengths) if lengths else 0.0, length_max=max(lengths, default=0),
        latent_steps_mean=statistics.fmean(s.latent_steps for s in scored) if scored else 0.0,
        lengths=lengths, correct=[s.correct for s in scored], latent_steps=[s.latent_steps for s in scored],
    )


__all__ = ["EvalResult", "Scored", "eval_prompt", "evaluate", "score"]
