"""Token classes a prompt vocabulary can be limited to, and the check of a vocabulary limit (no torch, so
specs and plans check their limits before anything loads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _is_ascii(text: str) -> bool:
    return bool(text) and text.isascii()


def _is_printable(text: str) -> bool:
    return _is_ascii(text) and text.isprintable()


def _is_word(text: str) -> bool:
    """A letters-only word, with at most one leading space (how BPE vocabularies spell word starts)."""
    word = text[1:] if text.startswith(" ") else text
    return word.isascii() and word.isalpha()


def _is_decodable(text: str) -> bool:
    """Whole characters: byte-level BPE tokens that hold part of a multi-byte character decode alone to
    U+FFFD, and a prompt holding them does not survive decode -> re-encode (the text changes)."""
    return bool(text) and "\ufffd" not in text


TOKEN_CLASSES = {"ascii": _is_ascii, "printable": _is_printable, "words": _is_word, "decodable": _is_decodable}
# `first:N`: the vocabulary's first N ids; in a byte-level BPE, its earliest merges, which are its commonest pieces
FIRST_IDS = "first:"


def first_ids_limit(allowed: str) -> int | None:
    """N of an `allowed: first:N` limit, None for any other value; a malformed N is a one-line ValueError."""
    if not allowed.startswith(FIRST_IDS):
        return None
    count = allowed[len(FIRST_IDS):]
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"allowed {allowed!r}: first:N needs a positive integer N, e.g. first:16384")
    return int(count)


def check_vocabulary_limits(allowed: str | None, banned: Sequence[str]) -> None:
    """One-line ValueError for a limit that cannot apply: an unknown class that is no file, or a bad banned list."""
    if allowed is not None and (not isinstance(allowed, str) or (
            allowed not in TOKEN_CLASSES and first_ids_limit(allowed) is None and not Path(allowed).is_file())):
        raise ValueError(f"allowed must be one of {sorted(TOKEN_CLASSES)}, first:N or a word-list file, "
                         f"got {allowed!r}")
    bad = [text for text in banned if not isinstance(text, str) or not text]
    if isinstance(banned, str) or bad:
        raise ValueError(f"banned must be a list of non-empty texts, got {banned!r}")
