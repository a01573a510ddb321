"""Inversion methods behind one interface: run(Problem, Budget) -> Result."""

from softtoken.methods.base import (
    METHODS,
    Budget,
    NonFiniteLossError,
    NullTracker,
    Problem,
    Result,
    Tracker,
    get_method_class,
    register_method,
)
from softtoken.methods.dlmi import DLMI, DLMIConfig, dlmi_paper, dlmi_paper_free
from softtoken.methods.presets import PRESETS, build_method, get_preset, with_options

__all__ = [
    "DLMI",
    "METHODS",
    "PRESETS",
    "Budget",
    "DLMIConfig",
    "NonFiniteLossError",
    "NullTracker",
    "Problem",
    "Result",
    "Tracker",
    "build_method",
    "dlmi_paper",
    "dlmi_paper_free",
    "get_method_class",
    "get_preset",
    "register_method",
    "with_options",
]
