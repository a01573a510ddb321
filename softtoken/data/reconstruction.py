"""Prompt-reconstruction sets: ground-truth prompts -> the model's greedy outputs, and prompt-recovery scores.

Same file format as the reference's SODA-style sets (dlmi-reference.md §9.2); the outputs are regenerated
with the model in use, so every target is reachable by construction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from softtoken.lm.softlm import SoftLM
from softtoken.metrics import exact_match, lcs_ratio, token_accuracy


@dataclass(frozen=True, kw_only=True)
class ReconstructionConfig:
    """How to draw ground-truth prompts: `source` is "random" (allowed tokens) or a text file path.

    A text file is sliced at random offsets, or with `lines` read as one prompt per line: the first
    `num_samples` non-empty lines not starting with `#`, each cut to its first `prompt_length` tokens.
    """

    source: str = "random"
    num_samples: int = 10
    prompt_length: int = 10  # tokens per ground-truth prompt
    output_length: int = 20  # greedy tokens generated from each prompt
    seed: int = 42
    lines: bool = False  # one prompt per line of `source`, in file order (a fixed, hand-written set)
    id_prefix: str | None = None  # sample ids "<prefix>_<i>"; None: "random", "text" or "line"

    def __post_init__(self) -> None:
        for name in ("num_samples", "prompt_length", "output_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"ReconstructionConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.source != "random" and not Path(self.source).is_file():
            raise ValueError(f"ReconstructionConfig.source must be 'random' or a text file, got {self.source!r}")
        if self.lines and self.source == "random":
            raise ValueError("ReconstructionConfig.lines needs a text file source, got source='random'")
        if self.id_prefix is not None and not self.id_prefix:
            raise ValueError("ReconstructionConfig.id_prefix must be non-empty or None, got ''")

    @property
    def mode(self) -> str:
        return "random" if self.source == "random" else "line" if self.lines else "text"


def _random_prompts(lm: SoftLM, cfg: ReconstructionConfig, generator: torch.Generator) -> torch.Tensor:
    index = torch.randint(lm.prompt_vocab_size, (cfg.num_samples, cfg.prompt_length), generator=generator)
    return lm.to_model_ids(index.to(lm.device)).cpu()  # (N, L)


def _text_slices(lm: SoftLM, cfg: ReconstructionConfig, generator: torch.Generator) -> torch.Tensor:
    ids = lm.encode(Path(cfg.source).read_text(encoding="utf-8"))
    if len(ids) < cfg.prompt_length:
        raise ValueError(f"{cfg.source!r} has {len(ids)} tokens, fewer than prompt_length={cfg.prompt_length}")
    starts = torch.randint(len(ids) - cfg.prompt_length + 1, (cfg.num_samples,), generator=generator)
    return torch.tensor([ids[s: s + cfg.prompt_length] for s in starts.tolist()])  # (N, L)


def _prompt_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, stripped line) of every non-empty line that is not a `#` comment."""
    stripped = ((number, line.strip()) for number, line in enumerate(text.splitlines(), start=1))
    return [(number, line) for number, line in stripped if line and not line.startswith("#")]


def _line_prompts(lm: SoftLM, cfg: ReconstructionConfig, generator: torch.Generator) -> torch.Tensor:
    del generator  # the lines are taken in file order; nothing is drawn
    lines = _prompt_lines(Path(cfg.source).read_text(encoding="utf-8"))
    if len(lines) < cfg.num_samples:
        raise ValueError(f"{cfg.source!r} has {len(lines)} prompt lines, fewer than num_samples={cfg.num_samples}")
    prompts = []
    for number, line in lines[: cfg.num_samples]:
        ids = lm.encode(line)
        if len(ids) < cfg.prompt_length:
            raise ValueError(f"{cfg.source!r} line {number} has {len(ids)} tokens, "
                             f"fewer than prompt_length={cfg.prompt_length}")
        prompts.append(ids[: cfg.prompt_length])
    return torch.tensor(prompts)  # (N, L)


def _sample_id(cfg: ReconstructionConfig, index: int) -> str:
    # Zero-padded in line mode so the ids of a hand-written set sort in file order.
    number = f"{index:02d}" if cfg.lines else str(index)
    return f"{cfg.id_prefix or cfg.mode}_{number}"


_DRAWS = {"random": _random_prompts, "text": _text_slices, "line": _line_prompts}


def generate_reconstruction_set(lm: SoftLM, cfg: ReconstructionConfig, *, model_name: str = "") -> dict[str, Any]:
    """Draw prompts, greedy-decode `output_length` tokens from each; return the reference JSON dict."""
    generator = torch.Generator().manual_seed(cfg.seed)
    prompts = _DRAWS[cfg.mode](lm, cfg, generator)  # (N, L)
    outputs = lm.greedy_generate(prompts, cfg.output_length).cpu()  # (N, T)
    source = "random" if cfg.source == "random" else Path(cfg.source).name
    samples = []
    for index, (prompt, output) in enumerate(zip(prompts.tolist(), outputs.tolist())):
        samples.append({
            "id": _sample_id(cfg, index),
            "ground_truth_prompt": lm.decode(prompt), "ground_truth_prompt_tokens": prompt,
            "text": lm.decode(output), "target_output_tokens": output, "token_ids": output,
            "prompt_length": cfg.prompt_length, "output_length": cfg.output_length, "k_target": 1,
        })
    metadata = {
        "model_name": model_name, "dataset_source": source, "prompt_length": cfg.prompt_length,
        "output_length": cfg.output_length, "generation_method": "greedy", "num_samples": cfg.num_samples,
        "seed": cfg.seed, "include_bos": False, "evaluation_type": "prompt_reconstruction",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "token_ids": True,
    }
    return {"metadata": metadata, "samples": samples}


def prompt_recovery_metrics(found: Sequence[int], truth: Sequence[int]) -> dict[str, float]:
    """How close a found prompt is to the ground-truth prompt, next to the functional eval/* scores."""
    return {
        "prompt/exact_match": float(exact_match(found, truth)),
        "prompt/token_accuracy": token_accuracy(found, truth),
        "prompt/lcs_ratio": lcs_ratio(found, truth),
    }
