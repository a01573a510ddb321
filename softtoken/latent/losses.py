"""SFT losses: shifted CE, CODI distillation at one target token, the mean-reasoning loss, and our
step-result loss (each written step's result read from the state fed into the matching thought).

KD follows CODI / the reference: blocks = decoder-layer outputs (embeddings dropped), per block
mean SmoothL1 (beta 1) or mean L2 between student S and detached teacher T, optionally divided by the
teacher's per-block std, then averaged over blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from softtoken.latent.batching import IGNORE


def shifted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token CE over positions whose label is not IGNORE; logits (B, T, V), labels (B, T)."""
    flat = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    return F.cross_entropy(flat, labels[:, 1:].reshape(-1), ignore_index=IGNORE)


def select_blocks(layers: tuple[torch.Tensor, ...], block_range: tuple[int, int] | None) -> list[torch.Tensor]:
    """Decoder-block outputs (entry 0, the embeddings, is dropped); `block_range` is inclusive."""
    blocks = list(layers[1:])
    if block_range is None:
        return blocks
    first, last = block_range
    if last >= len(blocks):
        raise ValueError(f"block_range {block_range} needs at least {last + 1} decoder layers, model has {len(blocks)}")
    return blocks[first : last + 1]


def at_positions(blocks: list[torch.Tensor], positions: torch.Tensor) -> torch.Tensor:
    """(B, nblocks, D): each block's hidden state at one position per row."""
    rows = torch.arange(positions.shape[0])
    return torch.stack([block[rows, positions] for block in blocks], dim=1)


def at_pairs(blocks: list[torch.Tensor], positions: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(P, nblocks, D): each block's hidden state at the kept entries of `positions` (B, m), row by row."""
    rows = torch.arange(positions.shape[0], device=positions.device)[:, None].expand_as(positions)[keep]
    return torch.stack([block[rows, positions[keep]] for block in blocks], dim=1)


def masked_mean(blocks: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """(B, nblocks, D): each block's mean over the marked positions (zeros where none)."""
    weights = mask.float() / mask.float().sum(-1, keepdim=True).clamp(min=1)  # (B, T)
    return torch.stack([torch.einsum("bt,btd->bd", weights, block) for block in blocks], dim=1)


def distill(student: torch.Tensor, teacher: torch.Tensor, calc: str, norm: str) -> torch.Tensor:
    """Scalar KD loss between (B, nblocks, D) stacks; the teacher is detached here."""
    teacher = teacher.detach()
    if calc == "smooth_l1":
        per_block = F.smooth_l1_loss(student, teacher, reduction="none", beta=1.0).mean(dim=(0, 2))  # (nblocks,)
    elif calc == "mean_l2":
        per_block = (student - teacher).norm(dim=-1).mean(0)  # (nblocks,)
    else:
        raise ValueError(f"calc must be 'smooth_l1' or 'mean_l2', got {calc!r}")
    if norm == "layerwise_std":
        # Llama's activation scale differs by orders of magnitude across layers; this evens them out.
        per_block = per_block / (teacher.transpose(0, 1).reshape(teacher.shape[1], -1).std(-1) + 1e-8)
    elif norm == "std":
        per_block = per_block / (teacher.std() + 1e-8)
    elif norm != "none":
        raise ValueError(f"norm must be 'none', 'layerwise_std' or 'std', got {norm!r}")
    return per_block.mean()


def step_result_ce(hidden: torch.Tensor, lm_head: torch.nn.Module, positions: torch.Tensor,
                   tokens: torch.Tensor) -> torch.Tensor:
    """Mean CE of `tokens` (B, m) under the plain LM head at `positions` (B, m; -1 = none) of the last-layer
    states `hidden` (B, T, D); 0 when no row has a position. The plain head, not the latent model's masked
    unembedding, since a thought's state also carries the CONTINUE/STOP decision through the stop head."""
    present = positions >= 0
    if not bool(present.any()):
        return hidden.sum() * 0.0
    states = at_pairs([hidden], positions, present)[:, 0]  # (n, D)
    return F.cross_entropy(lm_head(states).float(), tokens[present])
