"""The registry of synthetic tasks: each writes GSM8K-Aug rows and names the words a tokenizer needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from softtoken.configcheck import from_mapping
from softtoken.latent.data import SyntheticConfig, generate_synthetic, template_texts
from softtoken.latent.dial import DialConfig, dial_texts, generate_dial


@dataclass(frozen=True)
class Task:
    config: type
    generate: Callable[[Any], list[dict]]
    texts: Callable[[], list[str]]


TASKS: dict[str, Task] = {
    "arithmetic": Task(SyntheticConfig, generate_synthetic, template_texts),  # word problems, values to 999
    "dial": Task(DialConfig, generate_dial, dial_texts),  # digits modulo 10: state tracking
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def task_config(name: str, options: Mapping[str, Any]) -> Any:
    """The task's config from a mapping (unknown keys are a one-line error naming them)."""
    # YAML gives lists where a config holds tuples.
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in dict(options).items()}
    return from_mapping(get_task(name).config, values, f"task {name!r}")


def generate_rows(name: str, options: Mapping[str, Any]) -> list[dict]:
    return get_task(name).generate(task_config(name, options))
