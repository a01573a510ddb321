"""The prompt vocabulary: real, non-special tokenizer ids that also have an embedding row."""

from __future__ import annotations

from collections.abc import Iterable

import torch


def special_token_ids(tokenizer) -> set[int]:
    """Ids the tokenizer treats as special (BOS/EOS/PAD, chat-template and other added special tokens)."""
    ids = set(tokenizer.all_special_ids)
    ids.update(i for i, token in tokenizer.added_tokens_decoder.items() if token.special)
    return ids


def prompt_vocabulary(
    tokenizer,
    num_embeddings: int,
    *,
    banned: Iterable[int] = (),
    allowed: Iterable[int] | None = None,
) -> torch.Tensor:
    """Sorted allowed prompt ids (V',): excludes special tokens and embedding rows beyond the tokenizer."""
    limit = min(len(tokenizer), num_embeddings)
    excluded = special_token_ids(tokenizer) | set(banned)
    candidates = range(limit) if allowed is None else sorted(set(allowed))
    ids = [i for i in candidates if 0 <= i < limit and i not in excluded]
    if not ids:
        raise ValueError("the prompt vocabulary is empty after removing special and banned tokens")
    return torch.tensor(ids, dtype=torch.long)
