"""Scores of token sequences."""

from softtoken.metrics.sequence import exact_match, lcs_length, lcs_ratio, token_accuracy

__all__ = ["exact_match", "lcs_length", "lcs_ratio", "token_accuracy"]
