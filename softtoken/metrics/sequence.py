"""Token-level scores of a generated sequence against a target."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz.distance import LCSseq


def exact_match(generated: Sequence[int], target: Sequence[int]) -> bool:
    return list(generated) == list(target)


def lcs_length(generated: Sequence[int], target: Sequence[int]) -> int:
    return int(LCSseq.similarity(list(generated), list(target)))


def lcs_ratio(generated: Sequence[int], target: Sequence[int]) -> float:
    """Longest common subsequence of token ids over the target length."""
    return lcs_length(generated, target) / len(target)


def token_accuracy(generated: Sequence[int], target: Sequence[int]) -> float:
    """Positional matches over the target length."""
    return sum(g == t for g, t in zip(generated, target)) / len(target)
