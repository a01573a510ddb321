"""Which parameters train: PEFT LoRA on the backbone (plus the latent modules in full), or everything."""

from __future__ import annotations

import logging
import warnings

import torch

from softtoken.latent.model import LatentLM
from softtoken.latent.options import LoraOptions

logger = logging.getLogger(__name__)


def prepare_trainable(model: LatentLM, lora: LoraOptions, *, latent_run: bool, seed: int = 0) -> LatentLM:
    """Wrap the backbone with LoRA (adapters drawn from `seed`) or unfreeze it; the filter and special
    rows train in latent runs."""
    if lora.enabled:
        from peft import LoraConfig, get_peft_model

        if latent_run and not lora.latent_modules_to_save:
            raise ValueError("a latent run with LoRA needs 'latent_modules_to_save', else the filter never trains")
        config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                            target_modules=list(lora.target_modules))
        # PEFT draws lora_A from the global generator; fork it so the adapters are a function of the seed.
        with torch.random.fork_rng(), warnings.catch_warnings():
            torch.manual_seed(seed)
            # PEFT itself reads transformers' deprecated `is_gradient_checkpointing`; not a call of ours.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
            model.base = get_peft_model(model.base, config)
        model.lora_wrapped = True
    else:
        for p in model.base.parameters():
            p.requires_grad_(True)
    for name, p in model.named_parameters():
        if not name.startswith("base."):
            p.requires_grad_(latent_run)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("trainable parameters: %d (lora=%s, latent=%s)", trainable, lora.enabled, latent_run)
    return model


def param_groups(model: LatentLM, weight_decay: float, no_decay_some_params: bool) -> list[dict]:
    """AdamW groups; with `no_decay_some_params`, biases, norm gains and special rows get no decay."""
    skip: set[int] = set()
    if no_decay_some_params:
        for module in model.modules():
            if "Norm" in type(module).__name__:
                skip |= {id(p) for p in module.parameters(recurse=False)}
        skip |= {id(p) for n, p in model.named_parameters() if n.endswith("bias") or n.startswith("special_")}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if id(p) not in skip]
    rest = [p for p in params if id(p) in skip]
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0})
            if g["params"]]


def make_optimizer(model: LatentLM, lr: float, weight_decay: float, no_decay_some_params: bool) -> torch.optim.AdamW:
    return torch.optim.AdamW(param_groups(model, weight_decay, no_decay_some_params), lr=lr)
