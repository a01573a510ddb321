"""Checkpoints without pickles: trainable tensors and optimiser state as safetensors, the rest as JSON.

Layout of a run directory:
  config.json                   resolved options, model and data fingerprints (written once; provenance.py)
  metrics.jsonl                 one line per step; a resume first drops what followed its checkpoint
  checkpoints/step_000400/      model.safetensors, optimizer.safetensors, optimizer.json, state.json
  final/                        exported model: HF safetensors (LoRA merged), tokenizer, latent.*
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from softtoken.latent.model import LatentLM
from softtoken.latent.options import LatentSettings, config_from_dict, config_to_dict
from softtoken.latent.tokens import add_latent_tokens

logger = logging.getLogger(__name__)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().contiguous().clone() for name, p in model.named_parameters() if p.requires_grad}


def restore_trainable(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if set(params) != set(state):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"checkpoint does not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors = {f"{idx}.{key}": value.contiguous() for idx, slots in state["state"].items()
               for key, value in slots.items()}
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        slots.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> Path:
    """Write to a temporary folder and rename, so a crash never leaves a half checkpoint."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "model.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(meta))
    (tmp / "state.json").write_text(json.dumps(state))
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    restore_trainable(model, load_file(str(directory / "model.safetensors")))
    meta = json.loads((directory / "optimizer.json").read_text())
    _load_optimizer(optimizer, load_file(str(directory / "optimizer.safetensors")), meta)
    return json.loads((directory / "state.json").read_text())


def checkpoint_dirs(root: Path) -> list[Path]:
    """Finished checkpoints, oldest first (temporary folders are ignored)."""
    found = [p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def prune_checkpoints(root: Path, keep: int | None) -> None:
    if keep is None:
        return
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old)


def step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:06d}"


# -- exported models ----------------------------------------------------------------------------


def export_model(directory: Path, model: LatentLM, tokenizer: Any) -> Path:
    """Save a standalone model: merged backbone (safetensors), tokenizer, latent rows and filter."""
    directory.mkdir(parents=True, exist_ok=True)
    base = model.base
    if model.lora_wrapped:
        base = copy.deepcopy(base).merge_and_unload()
    base.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    latent = {name: p.detach().contiguous() for name, p in model.named_parameters() if not name.startswith("base.")}
    save_file(latent, str(directory / "latent.safetensors"))
    (directory / "latent.json").write_text(json.dumps(config_to_dict(model.settings)))
    return directory


def load_latent_model(name_or_path: str | None, settings: LatentSettings | None = None,
                      seed: int = 0) -> tuple[LatentLM, Any]:
    """A frozen LatentLM from an exported directory (latent rows restored) or any base model (fresh rows,
    filter drawn from `seed`). `settings` overrides the saved ones where given."""
    from softtoken.lm.loading import load_model

    loaded = load_model(name_or_path)
    ids = add_latent_tokens(loaded.tokenizer)
    path = Path(name_or_path) if name_or_path else None
    saved = path is not None and (path / "latent.safetensors").is_file()
    if settings is None:
        settings = config_from_dict(LatentSettings, json.loads((path / "latent.json").read_text())) if saved \
            else LatentSettings()
    # The fresh filter is drawn from the global generator; fork it so a run is a function of its seed
    # (a rerun, and the model a resume fingerprints, start from the same filter).
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LatentLM(loaded.model, ids, settings)
    if saved:
        state = load_file(str(path / "latent.safetensors"))
        expected = {name for name in dict(model.named_parameters()) if not name.startswith("base.")}
        if set(state) != expected:
            raise ValueError(f"{path}/latent.safetensors holds {sorted(state)}, the settings need {sorted(expected)}")
        model.load_state_dict(state, strict=False)
        logger.info("restored latent modules %s from %s", sorted(state), path)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), loaded.tokenizer
