"""softtoken: optimise what goes into a frozen causal language model."""

from softtoken.api import design, invert, invert_many, invert_universal
from softtoken.lm.evaluation import evaluate_prompts
from softtoken.lm.loading import LoadedModel, load_model
from softtoken.lm.softlm import SoftLM
from softtoken.methods import DLMI, Budget, DLMIConfig, Problem, Result
from softtoken.relax import Temperature, gumbel_noise, relax

__all__ = [
    "DLMI",
    "Budget",
    "DLMIConfig",
    "LoadedModel",
    "Problem",
    "Result",
    "SoftLM",
    "Temperature",
    "design",
    "evaluate_prompts",
    "gumbel_noise",
    "invert",
    "invert_many",
    "invert_universal",
    "load_model",
    "relax",
]
