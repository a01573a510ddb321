"""Relaxations of discrete tokens: Gumbel noise, temperatures, (straight-through) Gumbel-softmax, the simplex."""

from softtoken.relax.gumbel import GUMBEL_KINDS, gumbel_noise
from softtoken.relax.initial import initial_logits, simplex_start
from softtoken.relax.relaxation import HARD_METHODS, hard_index, relax, straight_through
from softtoken.relax.simplex import project_entropy, project_simplex, tsallis_entropy
from softtoken.relax.temperature import HiddenStateTemperature, Temperature

__all__ = [
    "GUMBEL_KINDS",
    "HARD_METHODS",
    "HiddenStateTemperature",
    "Temperature",
    "gumbel_noise",
    "hard_index",
    "initial_logits",
    "project_entropy",
    "project_simplex",
    "relax",
    "simplex_start",
    "straight_through",
    "tsallis_entropy",
]
