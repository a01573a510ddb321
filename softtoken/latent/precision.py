"""Optional bfloat16 autocast for latent training and evaluation; float32 is the default.

Only forward passes run under it. Callers take losses and log-probs on `.float()` logits outside the
context, so the numbers that are optimised or compared stay float32 while the matmuls run in bf16.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

import torch


def bf16_autocast(model: torch.nn.Module, enabled: bool) -> AbstractContextManager:
    """`torch.autocast` to bfloat16 on the model's device type when `enabled`, else a no-op context.

    A no-op rather than `autocast(enabled=False)`: the latter would switch off an autocast the caller
    already opened around us."""
    if not enabled:
        return contextlib.nullcontext()
    device_type = next(model.parameters()).device.type
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
