"""Named presets: a preset name maps to (method name, config factory)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from softtoken.methods.adc import adc_copy, adc_default, adc_polish, adc_sparse
from softtoken.methods.base import get_method_class
from softtoken.methods.dlmi import DLMIConfig, dlmi_demo, dlmi_paper, dlmi_paper_free
from softtoken.methods.gcg import (GCGConfig, gcg_combo, gcg_copy, gcg_copy_screen, gcg_fast, gcg_paper_lmi,
                                  gcg_target)
from softtoken.methods.hybrid import RelaxThenSearchConfig, adc_then_gcg
from softtoken.methods.pez import pez_paper
from softtoken.methods.pgd import pgd_paper, pgd_short
from softtoken.methods.program import anneal_inversion
from softtoken.methods.reinforce import reinforce_default, reinforce_paper
from softtoken.methods.soda import soda_paper


def gbda() -> DLMIConfig:
    """GBDA-style soft Gumbel-softmax: DLMI with a fixed, shared tau = 1 (not learnable, soft)."""
    return replace(dlmi_paper(), temperature=1.0, learnable_temperature=False,
                   decouple_learnable_temperature=False, stgs_hard=False)


def gcg_nanogcg() -> GCGConfig:
    """GCG with nanoGCG's documented defaults (250 steps, width 512, top-256, one swap, no buffer, filtered)."""
    return GCGConfig()


PRESETS: dict[str, tuple[str, Callable[[], Any]]] = {
    "dlmi-paper": ("dlmi", dlmi_paper),
    "dlmi-paper-free": ("dlmi", dlmi_paper_free),
    "dlmi-demo": ("dlmi", dlmi_demo),
    "anneal": ("program", anneal_inversion),
    "gbda": ("dlmi", gbda),
    "reinforce-paper": ("reinforce", reinforce_paper),
    "reinforce": ("reinforce", reinforce_default),
    "soda-paper": ("soda", soda_paper),
    "gcg": ("gcg", gcg_nanogcg),
    "gcg-paper-lmi": ("gcg", gcg_paper_lmi),
    "gcg-fast": ("gcg", gcg_fast),
    "gcg-combo": ("gcg", gcg_combo),
    "gcg-target": ("gcg", gcg_target),
    "gcg-copy": ("gcg", gcg_copy),
    "gcg-copy-screen": ("gcg", gcg_copy_screen),
    "relax-then-gcg": ("relax-then-search", RelaxThenSearchConfig),
    "adc-then-gcg": ("relax-then-search", adc_then_gcg),
    "pez": ("pez", pez_paper),
    "pgd": ("pgd", pgd_paper),
    "pgd-short": ("pgd", pgd_short),
    "adc": ("adc", adc_default),
    "adc-sparse": ("adc", adc_sparse),
    "adc-polish": ("adc", adc_polish),
    "adc-copy": ("adc", adc_copy),
}


def get_preset(name: str) -> tuple[str, Any]:
    """Return (method name, config) for a preset name."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
    method, factory = PRESETS[name]
    return method, factory()


def with_options(config: Any, options: dict[str, Any]) -> Any:
    """Override config fields by name; unknown names are an error listing the valid ones."""
    names = {f.name for f in fields(config)}
    unknown = sorted(set(options) - names)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {type(config).__name__}; valid: {sorted(names)}")
    return replace(config, **options)


def build_method(method: str | None = None, preset: str | None = None, options: dict[str, Any] | None = None):
    """Instantiate a registered method from a preset (or the method's default config) plus overrides."""
    if preset is not None:
        preset_method, config = get_preset(preset)
        if method is not None and method != preset_method:
            raise ValueError(f"preset {preset!r} belongs to method {preset_method!r}, not {method!r}")
        cls = get_method_class(preset_method)
    else:
        cls = get_method_class(method or "dlmi")
        if cls.config_class is None:
            raise ValueError(f"method {method!r} has no default config: give a preset or a config file")
        config = cls.config_class()
    return cls(with_options(config, options or {}))
