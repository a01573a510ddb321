"""What a run started from: the options hash and fingerprints of its model and data, in config.json.

A new run directory gets config.json before the first step. A directory that already holds one is
resumed only if options, model and data all match; otherwise `claim_run_dir` raises a one-line
ValueError and leaves the directory as it was (config.json keeps describing the whole run).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from softtoken.experiments.files import write_json_atomic

_SAMPLE = 256  # values hashed per tensor; smaller tensors are hashed whole

# provenance key -> (the CLI option that names it, what it is)
SOURCES = {"model": ("model", "the model"), "train_data": ("data", "the training rows"),
           "eval_data": ("data", "the evaluation rows")}


def model_fingerprint(model: torch.nn.Module) -> str:
    """sha256 over each parameter's name, shape, dtype and `_SAMPLE` evenly spaced values.

    A sample, not every byte: hashing a 1B model whole costs seconds and a device-to-host copy of all
    weights. Names and shapes catch another architecture, and another checkpoint (another init, a
    fine-tune, a merged LoRA) changes nearly every value, so the strided sample catches it; only a
    change confined to a few entries of one large tensor could slip through.
    """
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        flat = param.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // _SAMPLE)][:_SAMPLE].contiguous().cpu()
        digest.update(f"{name}:{tuple(param.shape)}:{param.dtype};".encode())
        digest.update(sample.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def rows_fingerprint(rows: list[dict[str, Any]]) -> str:
    """sha256 over the rows as canonical JSON: the same for hub and local data, blind to file formatting."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def claim_run_dir(run_dir: Path, record: dict[str, Any]) -> None:
    """Write `record` as config.json of a new run, or check it against the one already there.

    `record` is `options.resolved_record(...)` plus `provenance` (fingerprints keyed as SOURCES).
    """
    path = run_dir / "config.json"
    if not path.is_file():
        write_json_atomic(path, record)
        return
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg}); use a new --out") from None
    if old.get("hash") != record["hash"]:
        raise ValueError(f"{run_dir} holds a run with other options (hash {old.get('hash')}); use a new --out")
    if "provenance" not in old:
        raise ValueError(f"{path} records no model or data fingerprint (an older run); use a new --out")
    for key, (option, what) in SOURCES.items():
        if old["provenance"].get(key) != record["provenance"][key]:
            started, now = old["options"].get(option), record["options"].get(option)
            raise ValueError(f"--{option} {now!r} does not give {what} {run_dir} started from (--{option} "
                             f"{started!r}): fingerprint {record['provenance'][key]}, recorded "
                             f"{old['provenance'].get(key)}; resume with the original or use a new --out")
