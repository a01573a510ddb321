#!/usr/bin/env bash
# Create bench/peers/.venv: the environment of the nanoGCG peer row, apart from the project's .venv
# because nanogcg 0.3.0 pins transformers<=4.47.1 and softtoken needs transformers 5.
# Usage: bash bench/peers/setup.sh   (from any folder; rerunning it is harmless)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python3 -m venv "$here/.venv"
py="$here/.venv/bin/python"
# torch first and pinned: the CPU wheel is on disk; a resolver left to choose torch pulls gigabytes.
"$py" -m pip install -q torch==2.13.0
# The versions the resolver chose on 2026-12-01 with the pin above, tested together (README.md).
"$py" -m pip install -q nanogcg==0.3.0 transformers==4.47.1 tokenizers==0.21.4 huggingface-hub==0.36.2 \
    safetensors==0.8.0 scipy==1.17.1 sentencepiece==0.2.3 rapidfuzz==3.14.6 numpy==2.4.6 tqdm==4.70.1
"$py" -c "import importlib.metadata as m; print(*(f'{p} {m.version(p)}' for p in \
('torch', 'nanogcg', 'transformers', 'tokenizers', 'safetensors', 'rapidfuzz')), sep=' | ')"
