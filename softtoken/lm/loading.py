"""Load a frozen causal LM and its tokenizer: the embedded default, a local directory, a .gguf file or a hub id."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from softtoken.lm.embedded import EMBEDDED_NAME, embedded_gguf_path, ensure_converted

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# What a method's passes may run in: a dtype, or "auto" (bfloat16 where the hardware multiplies it natively).
COMPUTE_DTYPES = (*sorted(DTYPES), "auto")
DEVICE_TYPES = ("cpu", "cuda", "mps")


@dataclass
class LoadedModel:
    """A frozen model, its tokenizer and where it came from."""

    model: Any
    tokenizer: Any
    name: str


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags as Linux lists them (/proc/cpuinfo); empty where there is no such file."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split())


def native_bf16(device: torch.device) -> bool:
    """Whether `device` multiplies bfloat16 natively: a CUDA GPU that says so, or a CPU with AVX512-BF16 or AMX.
    Elsewhere (AVX2 CPUs, for one) bf16 matmuls are emulated: ~7x slower than float32 on this project's AVX2
    machine (docs/benchmarks.md §6). Without /proc/cpuinfo a CPU counts as not native: the safe choice."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_compute_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """A compute dtype (`COMPUTE_DTYPES`) on `device`: "auto" is bfloat16 where it is native, else float32."""
    if dtype == "auto":
        return torch.bfloat16 if native_bf16(device) else torch.float32
    return resolve_dtype(dtype)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    # torch accepts backends a frozen model cannot run on (meta, xla, ...): name the ones that work.
    if resolved is None or resolved.type not in DEVICE_TYPES:
        raise ValueError(f"device must be one of 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return resolved


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and no parameter gradients: only the prompt is ever optimised."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _source(name_or_path: str | None) -> tuple[str, dict[str, Any], str]:
    """Map a user-facing model name to (path or id, extra from_pretrained kwargs, display name)."""
    if name_or_path is None:
        return str(ensure_converted(embedded_gguf_path())), {}, EMBEDDED_NAME
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ValueError(f"model file not found: {name_or_path!r}")
        return str(ensure_converted(path)), {}, path.stem
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ValueError(f"model directory {name_or_path!r} has no config.json")
        return str(path), {"local_files_only": True}, path.name
    if path.exists() or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ValueError(f"model path not found or not a model: {name_or_path!r}")
    return name_or_path, {}, name_or_path


def load_model(
    name_or_path: str | None = None,
    *,
    device: str | torch.device | None = "cpu",
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load a frozen causal LM. `None` is the embedded SmolLM2-135M-Instruct (converted once, then cached)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype, torch_device = resolve_dtype(dtype), resolve_device(device)
    source, extra, display = _source(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **extra)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=torch_dtype, trust_remote_code=trust_remote_code, **extra
        )
    except (OSError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"could not load model {display!r}: {first_line}") from err
    return LoadedModel(model=freeze(model.to(torch_device)), tokenizer=tokenizer, name=display)
