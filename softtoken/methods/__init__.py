"""Inversion methods behind one interface: run(Problem, Budget) -> Result."""

from softtoken.methods.adc import ADC, ADCConfig, adc_copy, adc_default, adc_polish, adc_sparse
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
from softtoken.methods.gcg import GCG, GCGConfig, gcg_fast, gcg_paper_lmi
from softtoken.methods.hybrid import RelaxThenSearch, RelaxThenSearchConfig
from softtoken.methods.pez import PEZ, PEZConfig, pez_paper
from softtoken.methods.pgd import PGD, PGDConfig, pgd_paper, pgd_short
from softtoken.methods.presets import PRESETS, build_method, get_preset, with_options
from softtoken.methods.program import ProgramConfig, ProgramMethod, anneal_inversion
from softtoken.methods.reinforce import (
    Reinforce,
    ReinforceConfig,
    reinforce_default,
    reinforce_paper,
)
from softtoken.methods.soda import Soda, SodaConfig, soda_paper

__all__ = [
    "ADC",
    "ADCConfig",
    "DLMI",
    "GCG",
    "METHODS",
    "PRESETS",
    "Budget",
    "DLMIConfig",
    "GCGConfig",
    "NonFiniteLossError",
    "NullTracker",
    "PEZ",
    "PEZConfig",
    "PGD",
    "PGDConfig",
    "Problem",
    "ProgramConfig",
    "ProgramMethod",
    "Reinforce",
    "ReinforceConfig",
    "RelaxThenSearch",
    "RelaxThenSearchConfig",
    "Result",
    "Soda",
    "SodaConfig",
    "Tracker",
    "adc_default",
    "adc_polish",
    "adc_copy",
    "adc_sparse",
    "anneal_inversion",
    "build_method",
    "gcg_fast",
    "dlmi_paper",
    "dlmi_paper_free",
    "gcg_paper_lmi",
    "get_method_class",
    "get_preset",
    "pez_paper",
    "pgd_paper",
    "pgd_short",
    "register_method",
    "reinforce_default",
    "reinforce_paper",
    "soda_paper",
    "with_options",
]
