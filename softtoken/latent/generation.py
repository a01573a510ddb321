"""Our own decode loop: prefill, latent steps, answer tokens, one backbone call per step for the batch.

Rows may be in different phases at the same step (one still thinking, another already answering):
each row's next input is F(h) after a CONTINUE and a token embedding otherwise. `max_latent_steps`
forces STOP, the hard cap the reference lacked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from softtoken.latent.model import LatentLM


@dataclass
class Generation:
    completions: list[list[int]]  # generated ids per row, up to and including eos
    truncated: list[bool]  # no eos within max_new_tokens
    logits: torch.Tensor | None = None  # (B, steps, V) before the cap mask, when requested


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # (B, P)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # (B, P)
    return ids, mask


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy when temperature is 0, else a sample from softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / temperature, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: LatentLM, prompts: list[list[int]], *, max_new_tokens: int, max_latent_steps: int,
             temperature: float = 0.0, generator: torch.Generator | None = None,
             return_logits: bool = False) -> Generation:
    """Decode after prompts that may end inside an open latent block (e.g. with <START>)."""
    ids, mask = left_pad(prompts, model.ids.pad)
    out = model(ids, mask)
    cache, h, logits = out.cache, out.last_hidden, out.logits[:, -1]  # (B, D), (B, V)
    n_cont = (ids == model.ids.cont).sum(-1)  # (B,)
    last = ids[:, -1]
    positions = mask.sum(-1)  # next position id per row
    done = torch.zeros(len(prompts), dtype=torch.bool)
    steps: list[torch.Tensor] = []
    raw: list[torch.Tensor] = []
    for _ in range(max_new_tokens):
        raw.append(logits)
        at_cap = ((last == model.ids.start) | (last == model.ids.cont)) & (n_cont >= max_latent_steps)
        logits = logits.masked_fill(at_cap[:, None] & (torch.arange(logits.shape[-1]) == model.ids.cont), float("-inf"))
        token = _choose(logits, temperature, generator).masked_fill(done, model.ids.pad)  # (B,)
        steps.append(token)
        n_cont += (token == model.ids.cont).long()
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
        done = done | (token == model.ids.eos)
        if bool(done.all()):
            break
        thinking = (token == model.ids.cont)[:, None]  # (B, 1)
        hidden, _, cache, h = model.run(model.embed(token[:, None]), thinking, mask, positions[:, None], cache, h)
        logits = model.unembed(hidden, model.binary_positions(token[:, None]))[:, -1]
        positions, last = positions + 1, token
    result = _collect(torch.stack(steps, dim=1), model.ids.eos)
    result.logits = torch.stack(raw, dim=1) if return_logits else None  # (B, steps, V)
    return result


def _collect(tokens: torch.Tensor, eos: int) -> Generation:
    completions, truncated = [], []
    for row in tokens.tolist():
        cut = row.index(eos) + 1 if eos in row else len(row)
        completions.append(row[:cut])
        truncated.append(eos not in row)
    return Generation(completions, truncated)
