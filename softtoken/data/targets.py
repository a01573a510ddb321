"""Inversion targets: the reference's rank-k sampler and readers for reference JSON, JSONL and plain text.

The reference JSON (DLMI's `generate_dataset_with_perplexity.py`, see dlmi-reference.md §9) stores only
text; files written here keep that format, readable by the reference tools, and add `token_ids` to each
sample so the exact generated ids (not a re-tokenisation of the text) can be inverted.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from softtoken.lm.softlm import SoftLM

logger = logging.getLogger(__name__)


# The frame options a target may carry (softtoken.lm.frame.build_frame's), with their types.
CONTEXT_KEYS: dict[str, type] = {"prefix": str, "suffix": str, "template": str, "chat": bool, "system": str}


@dataclass(frozen=True, kw_only=True)
class Target:
    """One target: its id, text, optional token ids, difficulty k and ground-truth prompt ids."""

    id: str
    text: str
    ids: tuple[int, ...] | None = None  # None: tokenise `text` with the model in use
    k: int | None = None  # rank-k difficulty (reference `k_target`)
    prompt_ids: tuple[int, ...] | None = None  # ground-truth prompt of a prompt-reconstruction set
    context: Mapping[str, Any] = field(default_factory=dict)  # this target's own frame options (CONTEXT_KEYS)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.context) - set(CONTEXT_KEYS))
        if unknown:
            raise ValueError(f"Target {self.id!r}: unknown context key(s) {unknown}; valid: {list(CONTEXT_KEYS)}")
        for key, value in self.context.items():
            if not isinstance(value, CONTEXT_KEYS[key]):
                raise ValueError(f"Target {self.id!r}: context {key} must be {CONTEXT_KEYS[key].__name__}, "
                                 f"got {value!r}")
        if not self.id:
            raise ValueError("Target.id must be a non-empty string")
        if self.ids is not None and len(self.ids) == 0:
            raise ValueError(f"Target {self.id!r} has an empty token id list")
        if self.ids is None and not self.text:
            raise ValueError(f"Target {self.id!r} has neither text nor token ids")

    def resolve_ids(self, lm: SoftLM) -> tuple[int, ...]:
        """The ids to invert: stored ids when present, else the model's tokenisation of the text."""
        return self.ids if self.ids is not None else lm.encode_target(self.text)

    def to_dict(self) -> dict[str, Any]:
        data = {"id": self.id, "text": self.text, "ids": _as_list(self.ids), "k": self.k,
                "prompt_ids": _as_list(self.prompt_ids)}
        return data | dict(self.context)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        """Accepts our field names and the reference's (`token_ids`, `k_target`, `ground_truth_prompt_tokens`)."""
        ids = data.get("ids", data.get("token_ids"))
        prompt = data.get("prompt_ids", data.get("ground_truth_prompt_tokens"))
        k = data.get("k", data.get("k_target"))
        return cls(id=str(data["id"]), text=str(data.get("text") or ""), ids=_as_tuple(ids),
                   k=None if k is None else int(k), prompt_ids=_as_tuple(prompt),
                   context={key: data[key] for key in CONTEXT_KEYS if data.get(key) is not None})


def _as_list(ids: Sequence[int] | None) -> list[int] | None:
    return None if ids is None else [int(i) for i in ids]


def _as_tuple(ids: Iterable[int] | None) -> tuple[int, ...] | None:
    return None if ids is None else tuple(int(i) for i in ids)


@dataclass(frozen=True, kw_only=True)
class TargetSet:
    """An ordered set of targets with unique ids, plus the metadata of the file they came from."""

    targets: tuple[Target, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.targets:
            raise ValueError("the target set is empty")
        seen: set[str] = set()
        duplicates = sorted({t.id for t in self.targets if t.id in seen or seen.add(t.id)})
        if duplicates:
            raise ValueError(f"duplicate target ids: {duplicates[:5]}")

    def __len__(self) -> int:
        return len(self.targets)

    def with_context(self, defaults: Mapping[str, Any]) -> TargetSet:
        """Every target with `defaults` under its own context fields (its own win)."""
        if not defaults:
            return self
        targets = tuple(replace(t, context={**defaults, **t.context}) for t in self.targets)
        return TargetSet(targets=targets, metadata=self.metadata)

    def select(self, ids: Sequence[str] | None = None, limit: int | None = None) -> TargetSet:
        """Keep the named targets (in the given order) and/or the first `limit` ones."""
        targets = list(self.targets)
        if ids is not None:
            by_id = {t.id: t for t in targets}
            missing = [i for i in ids if i not in by_id]
            if missing:
                raise ValueError(f"target ids not in the dataset: {missing[:5]}")
            targets = [by_id[i] for i in ids]
        if limit is not None:
            targets = targets[:limit]
        return TargetSet(targets=tuple(targets), metadata=self.metadata)


# ----------------------------------------------------------------------------- readers
def load_targets(path: str | Path) -> TargetSet:
    """Read a reference JSON file (any extension), a .jsonl file or a plain-text file (one target per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"target file not found: {str(path)!r}")
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return _read_jsonl(raw, path)
    if raw.lstrip().startswith("{"):
        return _read_reference_json(raw, path)
    return _read_text(raw)


def _read_reference_json(raw: str, path: Path) -> TargetSet:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path.name}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(data, dict) or "samples" not in data:
        raise ValueError(f"{path.name}: a JSON target file needs a 'samples' list (reference format)")
    targets = tuple(Target.from_dict(sample) for sample in data["samples"])
    return TargetSet(targets=targets, metadata=dict(data.get("metadata", {})))


def _read_jsonl(raw: str, path: Path) -> TargetSet:
    targets = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path.name}:{number}: not valid JSON ({err.msg})") from err
        item.setdefault("id", f"line{number}")
        targets.append(Target.from_dict(item))
    return TargetSet(targets=tuple(targets), metadata={"source": path.name})


def _read_text(raw: str) -> TargetSet:
    # Lines are kept verbatim apart from the newline: a leading space changes the tokenisation.
    lines = [(n, line) for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    return TargetSet(targets=tuple(Target(id=f"line{n}", text=line) for n, line in lines),
                     metadata={"source": "text"})


# ----------------------------------------------------------------------------- rank-k generation
@dataclass(frozen=True, kw_only=True)
class RankKConfig:
    """The reference's rank-k sampler settings (dlmi-reference.md §9.1)."""

    k_min: int = 1
    k_max: int = 25
    k_step: int = 5  # k values are range(k_min, k_max + 1, k_step)
    num_samples: int = 5  # targets per k
    max_length: int = 20  # generated tokens per target (fewer when EOS is drawn)
    noise_factor: float = 1.0  # std of the Gaussian around k when drawing each token's rank
    seed: int = 42
    bos_token: str | None = None  # None: the tokenizer's BOS, else its EOS

    def __post_init__(self) -> None:
        for name in ("k_min", "k_step", "num_samples", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"RankKConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.k_max < self.k_min:
            raise ValueError(f"RankKConfig.k_max must be >= k_min={self.k_min}, got {self.k_max}")
        if self.noise_factor < 0:
            raise ValueError(f"RankKConfig.noise_factor must be >= 0, got {self.noise_factor}")

    @property
    def k_values(self) -> list[int]:
        return list(range(self.k_min, self.k_max + 1, self.k_step))


def _start_token(lm: SoftLM, bos_token: str | None) -> tuple[int, str]:
    tokenizer = lm.tokenizer
    if bos_token is not None:
        token_id = tokenizer.convert_tokens_to_ids(bos_token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise ValueError(f"bos_token {bos_token!r} is not a token of this tokenizer")
        return int(token_id), bos_token
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id), tokenizer.convert_ids_to_tokens(int(token_id))
    raise ValueError("the tokenizer has no BOS or EOS token; pass bos_token")


@torch.no_grad()
def _sample_rank_k(lm: SoftLM, start: int, k: int, cfg: RankKConfig, generator: torch.Generator) -> dict[str, Any]:
    """Append the ~k-th most likely token at each step, from [BOS], up to max_length tokens or EOS."""
    vocab = min(len(lm.tokenizer), lm.output_vocab_size)  # never a padded row the tokenizer cannot decode
    eos = lm.tokenizer.eos_token_id
    ids, ranks, probs = [start], [], []
    for _ in range(cfg.max_length):
        logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0, -1, :vocab].float()
        p = torch.softmax(logits, dim=-1)  # (V_out,)
        order = torch.argsort(p, descending=True, stable=True)
        positive = int((p > 0).sum())
        drawn = k + cfg.noise_factor * torch.randn((), generator=generator).item()
        rank = min(max(round(drawn), 1), positive)
        token = int(order[rank - 1])
        ranks.append(rank)
        probs.append(float(p[token]))
        if token == eos:
            break
        ids.append(token)
    generated = ids[1:]
    return {"token_ids": generated, "token_ranks": ranks, "token_probabilities": probs,
            "perplexity": _perplexity(lm, ids)}


def _perplexity(lm: SoftLM, ids: list[int]) -> float:
    if len(ids) < 2:
        return float("nan")
    tensor = torch.tensor([ids], device=lm.device)
    logits = lm.model(input_ids=tensor).logits[0, :-1].float()  # (n-1, V_out)
    loss = torch.nn.functional.cross_entropy(logits, tensor[0, 1:])
    return float(math.exp(loss.item()))


def generate_rank_k(lm: SoftLM, config: RankKConfig, *, model_name: str = "") -> dict[str, Any]:
    """Generate a rank-k target set; returns the reference JSON dict (with `token_ids` added per sample)."""
    start, bos_token = _start_token(lm, config.bos_token)
    generator = torch.Generator().manual_seed(config.seed)  # one stream over all samples, as the reference
    samples = []
    for k in config.k_values:
        for index in range(config.num_samples):
            drawn = _sample_rank_k(lm, start, k, config, generator)
            text = lm.tokenizer.decode([start] + drawn["token_ids"], skip_special_tokens=True)
            ranks = drawn["token_ranks"]
            samples.append({
                "id": f"k{k}_sample{index}", "k_target": k, "text": text, "token_ranks": ranks,
                "token_probabilities": drawn["token_probabilities"],
                "avg_rank": sum(ranks) / max(len(ranks), 1), "length": len(drawn["token_ids"]),
                "perplexity": drawn["perplexity"], "token_ids": drawn["token_ids"],
            })
    empty = [s["id"] for s in samples if not s["token_ids"]]
    if empty:
        logger.warning("rank-k samples ended at EOS before any token: %s", empty)
    metadata = {
        "model_name": model_name, "k_values": config.k_values, "k_min": config.k_min, "k_max": config.k_max,
        "k_step": config.k_step, "num_samples": config.num_samples, "max_length": config.max_length,
        "noise_factor": config.noise_factor, "seed": config.seed, "bos_token": bos_token,
        "eos_token": lm.tokenizer.eos_token, "generation_timestamp": time.time(), "token_ids": True,
    }
    return {"metadata": metadata, "samples": samples, "k_summaries": _k_summaries(samples)}


def _k_summaries(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    summaries = {}
    for k in sorted({s["k_target"] for s in samples}):
        group = [s for s in samples if s["k_target"] == k]
        ppl = [s["perplexity"] for s in group]
        lengths = [s["length"] for s in group]
        summaries[str(k)] = {
            "avg_perplexity": sum(ppl) / len(ppl), "min_perplexity": min(ppl), "max_perplexity": max(ppl),
            "avg_length": sum(lengths) / len(lengths), "min_length": min(lengths), "max_length": max(lengths),
            "num_samples": len(group),
        }
    return summaries
