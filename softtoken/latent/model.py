"""The latent-reasoning wrapper around a Llama-style causal LM (Ning, Kuo, Gomes, arXiv 2511.21581).

Sequence grammar: `... <START> <|CONTINUE|>xk <|STOP|> ...`. A CONTINUE position is fed
F(h_{p-1}), the recurrent filter of the previous position's last-layer hidden state; STOP is fed the
<END> embedding. At <START> and every CONTINUE position the only finite logits are CONTINUE and STOP
(the stop head: the two special output rows); elsewhere CONTINUE, STOP and END are -inf. The stop
decision is therefore an ordinary next-token choice, and CE, sampling and log-probs need no special
case. The four special rows live in this wrapper, not in the backbone's embedding matrix, so the
backbone (or its LoRA) is untouched and the rows train in full.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from softtoken.latent.options import LatentSettings
from softtoken.latent.tokens import TokenIds
from softtoken.lm.cache import cache_kwargs

logger = logging.getLogger(__name__)

_START, _END, _CONT, _STOP = range(4)  # row order of the special-token parameters


def _mlp_filter(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.LayerNorm(hidden))


def _linear_ln_filter(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(hidden, hidden), nn.LayerNorm(hidden))


def _identity_filter(hidden: int) -> nn.Module:
    return nn.Identity()


FILTERS = {"MLP": _mlp_filter, "linear_ln": _linear_ln_filter, "none": _identity_filter}


def _init_filter(module: nn.Module, output_scale: float) -> None:
    """Xavier-uniform weights and zero biases, as the reference; LayerNorm weights start at `output_scale`
    (1 in the reference)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        if isinstance(layer, nn.LayerNorm):
            nn.init.constant_(layer.weight, output_scale)


@dataclass
class LatentOutput:
    logits: torch.Tensor  # (B, T, V) with -inf outside the allowed classes
    hidden: torch.Tensor  # (B, T, D) last layer, post final norm
    layers: tuple[torch.Tensor, ...] | None  # L+1 entries of (B, T, D) when requested
    cache: Any
    last_hidden: torch.Tensor  # (B, D) hidden state at the final position


class LatentLM(nn.Module):
    """Backbone + recurrent filter + special-token rows; `forward` walks latent columns one by one."""

    def __init__(self, base: nn.Module, ids: TokenIds, settings: LatentSettings) -> None:
        super().__init__()
        self.base, self.ids, self.settings = base, ids, settings
        self.lora_wrapped = False  # set by lora.prepare_trainable when `base` becomes a PeftModel
        causal = self.causal
        hidden = causal.config.hidden_size
        self.base_vocab = causal.lm_head.out_features
        self.vocab_size = max(self.base_vocab, max(ids.latent) + 1)
        self.filter = FILTERS[settings.filter_mode](hidden)
        embeddings = causal.get_input_embeddings().weight.detach()[: self.base_vocab]
        _init_filter(self.filter, float(embeddings.pow(2).mean().sqrt()) if settings.filter_embedding_scale else 1.0)
        # New rows start at the mean existing row (HF mean-resizing without the noise).
        mean_in = embeddings.mean(0)
        self.special_in = nn.Parameter(mean_in.repeat(4, 1).clone())  # (4, D)
        self.tied = bool(getattr(causal.config, "tie_word_embeddings", False))
        if not self.tied:
            mean_out = causal.lm_head.weight.detach().mean(0)
            self.special_out = nn.Parameter(mean_out.repeat(4, 1).clone())  # (4, D)

    @property
    def causal(self) -> nn.Module:
        """The underlying *ForCausalLM (inside a PEFT wrapper when LoRA is on)."""
        return self.base.get_base_model() if self.lora_wrapped else self.base

    @property
    def out_rows(self) -> torch.Tensor:
        return self.special_in if self.tied else self.special_out

    @property
    def num_layers(self) -> int:
        return self.causal.config.num_hidden_layers

    # -- embedding and unembedding ------------------------------------------------------------

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, D); START/END rows from the wrapper, STOP -> END, CONTINUE -> zeros."""
        special = torch.isin(ids, torch.tensor(self.ids.latent, device=ids.device)) | (ids >= self.base_vocab)
        x = self.causal.get_input_embeddings()(ids.masked_fill(special, 0))  # (B, T, D)
        x = torch.where((ids == self.ids.start)[..., None], self.special_in[_START], x)
        x = torch.where(((ids == self.ids.stop) | (ids == self.ids.end))[..., None], self.special_in[_END], x)
        return x.masked_fill((ids == self.ids.cont)[..., None], 0.0)

    def unembed(self, hidden: torch.Tensor, binary: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V); `binary` (B, T) marks stop-head positions."""
        logits = self.causal.lm_head(hidden)  # (B, T, V_base)
        if self.vocab_size > self.base_vocab:
            pad = logits.new_full((*logits.shape[:-1], self.vocab_size - self.base_vocab), float("-inf"))
            logits = torch.cat([logits, pad], dim=-1)  # (B, T, V)
        columns = torch.arange(self.vocab_size, device=hidden.device)
        rows = self.out_rows
        logits = torch.where(columns == self.ids.start, (hidden @ rows[_START])[..., None], logits)
        banned = torch.tensor([self.ids.end, self.ids.cont, self.ids.stop], device=hidden.device)
        logits = logits.masked_fill(torch.isin(columns, banned), float("-inf"))
        head_in = hidden.detach() if self.settings.detach_binary_head_inputs else hidden
        pair = head_in @ rows[[_CONT, _STOP]].T / self.settings.binary_head_temp  # (B, T, 2)
        stop_head = torch.full_like(logits, float("-inf"))
        stop_head = torch.where(columns == self.ids.cont, pair[..., :1], stop_head)
        stop_head = torch.where(columns == self.ids.stop, pair[..., 1:], stop_head)
        return torch.where(binary[..., None], stop_head, logits)

    def binary_positions(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids == self.ids.start) | (ids == self.ids.cont)

    # -- the recurrent forward ----------------------------------------------------------------

    def check_grammar(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Raise unless every row's latent tokens read START CONTINUE* STOP (open at the end allowed)."""
        if bool(((ids == self.ids.end) & mask.bool()).any()):
            raise ValueError("<END> may not appear in input ids; close a latent block with <|STOP|>")
        latent = torch.tensor([self.ids.start, self.ids.cont, self.ids.stop], device=ids.device)
        for row, col in zip(*torch.nonzero(torch.isin(ids, latent) & mask.bool(), as_tuple=True), strict=True):
            token, prev = int(ids[row, col]), int(ids[row, col - 1]) if col > 0 else -1
            inside_prev = prev in (self.ids.start, self.ids.cont)
            if (token == self.ids.start) == inside_prev:
                raise ValueError(f"latent grammar broken in row {int(row)} at column {int(col)}: "
                                 "expected <START> <|CONTINUE|>* <|STOP|>")
        # A block must close before normal tokens resume: a START/CONTINUE followed by a plain token.
        following = ids[:, 1:]
        opened = self.binary_positions(ids[:, :-1]) & mask[:, 1:].bool()
        if bool((opened & ~torch.isin(following, latent[1:])).any()):
            raise ValueError("latent grammar broken: an open block is followed by a normal token")

    def run(self, embeds: torch.Tensor, thinking: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
            cache: Any = None, h_prev: torch.Tensor | None = None, output_hidden_states: bool = False):
        """Backbone over (B, T, D) inputs; columns with any thinking row run one at a time, so F(h) of
        the previous position is known when it is needed. `mask` covers cache + T positions."""
        from transformers import DynamicCache

        cache = cache if cache is not None else DynamicCache()
        past = mask.shape[1] - embeds.shape[1]
        think_cols = thinking.any(0).tolist()
        hiddens, layers, col = [], [], 0
        while col < len(think_cols):
            end = col + 1
            while not think_cols[col] and end < len(think_cols) and not think_cols[end]:
                end += 1
            chunk = embeds[:, col:end]  # (B, t, D)
            if think_cols[col]:
                if h_prev is None:
                    raise ValueError("a <|CONTINUE|> needs a previous position")
                chunk = torch.where(thinking[:, col, None, None], self.filter(h_prev)[:, None], chunk)
            out = self.causal.model(inputs_embeds=chunk, attention_mask=mask[:, : past + end],
                                    position_ids=positions[:, col:end], use_cache=True,
                                    output_hidden_states=output_hidden_states, **cache_kwargs(self.causal.model, cache))
            hiddens.append(out.last_hidden_state)
            layers.append(out.hidden_states)
            h_prev, col = out.last_hidden_state[:, -1], end
        hidden = torch.cat(hiddens, dim=1)  # (B, T, D)
        stacked = tuple(torch.cat(parts, dim=1) for parts in zip(*layers, strict=True)) if output_hidden_states else None
        return hidden, stacked, cache, h_prev

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, output_hidden_states: bool = False) -> LatentOutput:
        """Teacher-forced pass over complete sequences (B, T); padding may sit on either side."""
        self.check_grammar(ids, mask)
        positions = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        hidden, layers, cache, last = self.run(self.embed(ids), ids == self.ids.cont, mask, positions,
                                               output_hidden_states=output_hidden_states)
        return LatentOutput(self.unembed(hidden, self.binary_positions(ids)), hidden, layers, cache, last)
