"""The prompt vocabulary: real, non-special tokenizer ids that also have an embedding row."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from softtoken.lm.token_classes import TOKEN_CLASSES, first_ids_limit


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


def _token_texts(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.batch_decode([[i] for i in ids])


def allowed_token_ids(tokenizer, ids: list[int], allowed: str) -> list[int]:
    """The ids among `ids` of a token class (`ascii`, `printable`: ASCII without control characters,
    `words`: letters only, `decodable`: no part of a multi-byte character), below N (`first:N`) or, for any
    other value, listed in the file `allowed` (one word a line; a token is allowed when its text, without one
    leading space, is a listed word)."""
    first = first_ids_limit(allowed)
    if first is not None:
        return [i for i in ids if i < first]
    texts = _token_texts(tokenizer, ids)
    if allowed in TOKEN_CLASSES:
        keep = TOKEN_CLASSES[allowed]
    else:
        path = Path(allowed)
        if not path.is_file():
            raise ValueError(f"allowed must be one of {sorted(TOKEN_CLASSES)}, first:N or a word-list file, "
                             f"got {allowed!r}")
        words = {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
        if not words:
            raise ValueError(f"allowed word list {allowed} is empty")

        def keep(text: str) -> bool:
            return (text[1:] if text.startswith(" ") else text) in words
    return [i for i, text in zip(ids, texts) if keep(text)]


def banned_token_ids(tokenizer, texts: Iterable[str]) -> set[int]:
    """Every token of each banned text, spelt alone and after a space (BPE spells the two differently)."""
    banned = set()
    for text in texts:
        if not text:
            raise ValueError("banned texts must be non-empty, got ''")
        for variant in (text, " " + text.lstrip()):
            banned.update(tokenizer(variant, add_special_tokens=False).input_ids)
    return banned


def restricted_vocabulary(tokenizer, num_embeddings: int, *, allowed: str | None = None,
                          banned: Iterable[str] = ()) -> torch.Tensor:
    """The prompt vocabulary limited to a token class or word list and without the tokens of banned texts."""
    base = prompt_vocabulary(tokenizer, num_embeddings).tolist()
    kept = base if allowed is None else allowed_token_ids(tokenizer, base, allowed)
    excluded = banned_token_ids(tokenizer, banned)
    if not set(kept) - excluded:
        raise ValueError(f"the prompt vocabulary is empty: allowed={allowed!r} with banned={list(banned)} "
                         f"leaves no token of the model's")
    return prompt_vocabulary(tokenizer, num_embeddings, banned=excluded, allowed=kept)


_LIMITED: dict[tuple, tuple] = {}  # (tokenizer id, rows, allowed, banned) -> (tokenizer, allowed ids)


def limit_vocabulary(lm, allowed: str | None, banned: Iterable[str] = ()):
    """`lm` (a SoftLM) with its prompt vocabulary limited; itself when there is no limit. The limited ids are
    computed once per process and limits (a sweep worker runs many targets on one model)."""
    banned = tuple(banned)
    if allowed is None and not banned:
        return lm
    key = (id(lm.tokenizer), int(lm.embedding.shape[0]), allowed, banned)
    if key not in _LIMITED:  # the value holds the tokenizer, so its id is not reused while cached
        _LIMITED[key] = (lm.tokenizer, restricted_vocabulary(lm.tokenizer, lm.embedding.shape[0], allowed=allowed,
                                                             banned=banned))
    return lm.restricted(_LIMITED[key][1])
