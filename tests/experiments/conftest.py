"""Fixtures for sweep tests: a small target file and a spec writer (the tiny model directory: tests/conftest.py)."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture()
def targets_file(tmp_path):
    path = tmp_path / "targets.jsonl"
    rows = [{"id": f"t{i}", "text": f"w{i + 5} w{i + 6}", "k": 1 + 5 * (i % 2)} for i in range(4)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture()
def tiny_spec(model_dir, targets_file):
    """A factory of sweep specs over the tiny model; each run takes well under a second."""

    def make(**overrides) -> dict:
        return {**base, **overrides}

    base = {
        "name": "tiny", "model": str(model_dir), "dataset": {"path": str(targets_file)}, "prompt_length": 2,
        "seeds": [1, 2], "budget": {"steps": 4}, "threads_per_run": 1,
        "methods": [{"label": "DLMI", "method": "dlmi",
                     "options": {"batch_size": 2, "eval_every": 2, "temperature": 1.0}}],
    }
    return make


@pytest.fixture()
def write_spec(tmp_path):
    def write(data: dict, name: str = "spec.yaml"):
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path

    return write
