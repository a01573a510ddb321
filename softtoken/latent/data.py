"""GSM8K-Aug rows ({question, steps, answer}): loading, a seeded synthetic stand-in, and the SFT/RL pipeline.

The synthetic generator writes the same schema as `whyNLP/gsm8k-aug`: a word problem whose answer
needs S calculator steps `<<a op b=c>>`; more steps means a harder problem, so adaptive-length
behaviour has a signal to find.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from softtoken.configcheck import check_types, check_values

logger = logging.getLogger(__name__)

HUB_NAMES = {"gsm8k-aug": "whyNLP/gsm8k-aug", "gsm8k-aug-nl": "whyNLP/gsm8k-aug-nl"}
STEP_JOIN = {"gsm8k-aug": "", "gsm8k-aug-nl": " "}
SHUFFLE_SEED = 42  # one seeded shuffle, so the SFT head slice and the RL tail slice are disjoint
_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")

Row = dict[str, Any]


def find_number(text: str) -> float | None:
    """First number in the text, commas removed (the reference's answer extraction)."""
    match = _NUMBER.search(text.replace(",", ""))
    return float(match.group(0)) if match else None


def step_result(step: str) -> str:
    """The result of one written calculator step (`<<(4*2)%10=8>>` -> "8", `4+1=5` -> "5")."""
    value = find_number(step.rsplit("=", 1)[-1])
    if value is None:
        raise ValueError(f"calculator step {step!r} has no result after its last '='")
    return str(int(value)) if value == int(value) else str(value)


# ----------------------------------------------------------------------------------------------
# Synthetic generator

NAMES = ("Tom", "Ann", "Sam", "Mia", "Ben", "Eva")
ITEMS = ("apples", "pens", "coins", "cards", "books")
OPENING = "{name} has {value} {item}."
SENTENCES = {  # one sentence per calculator step
    "add": " {name} gets {b} more.",
    "sub": " {name} gives away {c}.",
    "mul": " {name} gets {f} times as many.",
    "add_sub": " {name} gets {b} more and gives away {c}.",
}
CLOSING = " How many {item} does {name} have?"
NL_STEP = "{name} has {equation} {item}."


def template_texts() -> list[str]:
    """Every template filled with every name and item: the word inventory of the generator."""
    fill = {"b": 1, "c": 2, "f": 3, "value": 4, "equation": "4+1=5"}
    texts = []
    for name in NAMES:
        for item in ITEMS:
            parts = [OPENING, *SENTENCES.values(), CLOSING, NL_STEP, " ", NL_STEP]
            texts.append("".join(p.format(name=name, item=item, **fill) for p in parts))
    return texts


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Seeded word problems in the GSM8K-Aug schema; difficulty grows with the step count S."""

    num_examples: int = 1000  # >= 1
    min_steps: int = 1  # >= 1
    max_steps: int = 4  # >= min_steps; S is uniform on [min_steps, max_steps]
    max_operand: int = 20  # >= 2; operands are drawn from [1, max_operand]
    max_value: int = 999  # every intermediate value stays in [0, max_value]
    multi_operand_rate: float = 0.2  # in [0, 1]; share of `<<x+b-c=z>>` steps
    natural_language: bool = False  # steps as "x+b=z" sentences (the -nl variant)
    seed: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        checks = [
            (self.num_examples >= 1, "num_examples", ">= 1"),
            (self.min_steps >= 1, "min_steps", ">= 1"),
            (self.max_steps >= self.min_steps, "max_steps", ">= min_steps"),
            (self.max_operand >= 2, "max_operand", ">= 2"),
            (self.max_value >= 4 * self.max_operand, "max_value", ">= 4 * max_operand"),
            (0 <= self.multi_operand_rate <= 1, "multi_operand_rate", "in [0, 1]"),
        ]
        check_values(self, checks)


def draw_int(generator: torch.Generator, low: int, high: int) -> int:
    """A seeded integer uniform on [low, high]."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _one_step(value: int, name: str, config: SyntheticConfig, gen: torch.Generator) -> tuple[str, str, int]:
    """(sentence, equation, new value); the operation is redrawn until the value stays in range."""
    while True:
        kind = ("add", "sub", "mul")[draw_int(gen, 0, 2)]
        if float(torch.rand((1,), generator=gen)) < config.multi_operand_rate:
            kind = "add_sub"
        b, c = draw_int(gen, 1, config.max_operand), draw_int(gen, 1, config.max_operand)
        f = 2 + b % 2
        results = {"add": (f"{value}+{b}", value + b), "sub": (f"{value}-{c}", value - c),
                   "mul": (f"{value}*{f}", value * f), "add_sub": (f"{value}+{b}-{c}", value + b - c)}
        expression, result = results[kind]
        if 0 <= result <= config.max_value:
            return SENTENCES[kind].format(name=name, b=b, c=c, f=f), f"{expression}={result}", result


def synthetic_row(config: SyntheticConfig, gen: torch.Generator) -> Row:
    name, item = NAMES[draw_int(gen, 0, len(NAMES) - 1)], ITEMS[draw_int(gen, 0, len(ITEMS) - 1)]
    value = draw_int(gen, 1, config.max_operand)
    question, steps = OPENING.format(name=name, value=value, item=item), []
    for _ in range(draw_int(gen, config.min_steps, config.max_steps)):
        sentence, equation, value = _one_step(value, name, config, gen)
        question += sentence
        steps.append(NL_STEP.format(name=name, equation=equation, item=item) if config.natural_language
                     else f"<<{equation}>>")
    return {"question": question + CLOSING.format(item=item, name=name), "steps": steps, "answer": str(value)}


def generate_synthetic(config: SyntheticConfig) -> list[Row]:
    gen = torch.Generator().manual_seed(config.seed)
    return [synthetic_row(config, gen) for _ in range(config.num_examples)]


def write_jsonl(rows: list[Row], path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


# ----------------------------------------------------------------------------------------------
# Loading


ROW_KEYS = ("question", "steps", "answer")


def load_rows(data: str | None, data_name: str, split: str, *, numeric_answers: bool = False) -> list[Row]:
    """Checked rows from a local `<dir>/<split>.jsonl|.json`, a single file, or the hub (needs `datasets`).

    Every row is checked here, before any work, and an error names file and line. Training pipelines
    drop rows whose answer is not a number; an evaluation split cannot, so it sets `numeric_answers`.
    """
    if data is None:
        rows, where = _load_hub(data_name, split), f"{HUB_NAMES[data_name]} ({split})"
        checked = [_check_row(row, f"{where} row {i}", numeric_answers) for i, row in enumerate(rows, 1)]
    else:
        path = _split_file(data, split)
        where = str(path)
        checked = _read_json(path, numeric_answers) if path.suffix == ".json" else _read_jsonl(path, numeric_answers)
    if not checked:
        raise ValueError(f"{where} holds no rows")
    logger.info("loaded %d rows from %s", len(checked), where)
    return checked


def _split_file(data: str, split: str) -> Path:
    """`<dir>/<split>.jsonl` or `.json` inside a directory, or the file itself."""
    path = Path(data)
    if path.is_dir():
        found = [c for c in (path / f"{split}.jsonl", path / f"{split}.json") if c.is_file()]
        if not found:
            raise ValueError(f"data directory {data!r} has no {split}.jsonl or {split}.json")
        return found[0]
    if not path.is_file():
        raise ValueError(f"data path not found: {data!r}")
    return path


def _read_jsonl(path: Path, numeric_answers: bool) -> list[Row]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number}: not valid JSON ({err.msg} at column {err.colno})") from None
        rows.append(_check_row(row, f"{path} line {number}", numeric_answers))
    return rows


def _read_json(path: Path, numeric_answers: bool) -> list[Row]:
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} line {err.lineno}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path} must hold a JSON list of rows, got {type(rows).__name__}")
    return [_check_row(row, f"{path} row {i}", numeric_answers) for i, row in enumerate(rows, 1)]


def _check_row(row: Any, where: str, numeric_answers: bool) -> Row:
    """The row itself if it has the GSM8K-Aug schema, else a ValueError that starts with `where`."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object with keys {', '.join(ROW_KEYS)}, got {type(row).__name__}")
    for key in ROW_KEYS:
        if key not in row:
            raise ValueError(f"{where}: missing key {key!r}")
    if not isinstance(row["question"], str):
        raise ValueError(f"{where}: 'question' must be a string, got {row['question']!r:.60}")
    if not (isinstance(row["steps"], list) and all(isinstance(step, str) for step in row["steps"])):
        raise ValueError(f"{where}: 'steps' must be a list of strings, got {row['steps']!r:.60}")
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, str | int | float):
        raise ValueError(f"{where}: 'answer' must be a string or a number, got {answer!r:.60}")
    if numeric_answers and not valid_answer(row, allow_negative=True):
        raise ValueError(f"{where}: 'answer' must be a finite number to be scored, got {answer!r:.60}")
    return row


def _load_hub(data_name: str, split: str) -> list[Row]:
    try:
        import datasets
    except ImportError as err:
        raise ValueError("loading from the hub needs `pip install datasets`; or pass --data DIR") from err
    return [dict(row) for row in datasets.load_dataset(HUB_NAMES[data_name], split=split)]


# ----------------------------------------------------------------------------------------------
# Pipeline (order as in the reference: slice, filter, drop last step, latent count)


def seeded_slice(rows: list[Row], proportion: float, *, tail: bool) -> list[Row]:
    """Head (SFT) or tail (RL) fraction of one seed-42 shuffle."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(SHUFFLE_SEED)).tolist()
    cut = int(round(len(rows) * (1 - proportion if tail else proportion)))
    keep = order[cut:] if tail else order[:cut]
    return [rows[i] for i in keep]


def valid_answer(row: Row, *, allow_negative: bool) -> bool:
    answer = str(row["answer"]).replace(",", "")
    try:
        value = float(answer)
    except ValueError:
        return False
    return math.isfinite(value) and (allow_negative or value >= 0)


def latent_count(num_steps: int, factor: int, bias: int, low: int, high: int) -> int:
    """n = clamp(S * factor + bias, low, high), S the original step count."""
    return max(low, min(high, num_steps * factor + bias))


def prepare_sft_rows(rows: list[Row], config: Any) -> list[Row]:
    """Apply an SftConfig's data options; each row gains `num_latent` (0 for non-latent runs)."""
    rows = seeded_slice(rows, config.slice_proportion, tail=False)
    rows = [r for r in rows if valid_answer(r, allow_negative=not config.remove_negative_answers)]
    prepared = []
    for row in rows:
        steps = list(row["steps"])
        original = len(steps)
        if config.remove_last_reasoning_step:
            steps = steps[:-1]
        if config.no_cot:
            steps = []
        num_latent = 0
        if config.is_latent:
            num_latent = latent_count(original, config.latent_factor, config.latent_bias,
                                      config.latent_min, config.latent_max)
        prepared.append({**row, "steps": steps, "num_steps": original, "num_latent": num_latent})
    return prepared


def prepare_rl_rows(rows: list[Row], config: Any) -> list[Row]:
    rows = seeded_slice(rows, config.slice_proportion, tail=True)
    return [r for r in rows if valid_answer(r, allow_negative=True)]
