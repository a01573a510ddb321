"""The KV-cache keyword of a model's forward, across transformers versions.

transformers 5.2x renamed `past_key_values` to `cache` (the old name warns, and goes in 5.40); older
releases only know `past_key_values`. Asking the forward's signature keeps one code path for both."""

from __future__ import annotations

import functools
import inspect
from typing import Any


@functools.lru_cache(maxsize=None)
def _cache_keyword(model_class: type) -> str:
    parameters = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """{keyword: cache} for `model`'s forward; empty when there is no cache to pass."""
    return {} if cache is None else {_cache_keyword(type(model)): cache}


def returned_cache(output: Any) -> Any:
    """The cache a forward with `use_cache=True` returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
