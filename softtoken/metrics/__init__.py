"""Scores of token sequences."""

from softtoken.metrics.sequence import exact_match, lcs_length, lcs_ratio, token_accuracy
from softtoken.metrics.tracking import NullTracker, Tracker

__all__ = ["NullTracker", "Tracker", "exact_match", "lcs_length", "lcs_ratio", "token_accuracy"]
