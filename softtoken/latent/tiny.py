"""A tiny random Llama and word tokenizer over the synthetic corpus: the offline CPU setup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from softtoken.latent.model import LatentLM
from softtoken.latent.options import LatentSettings
from softtoken.latent.tokens import add_latent_tokens, build_word_tokenizer


def synthetic_tokenizer(task: str = "arithmetic") -> Any:
    """Word tokenizer covering every word a synthetic task (both variants of arithmetic) can emit."""
    from softtoken.latent.tasks import get_task

    return build_word_tokenizer(get_task(task).texts())


def tiny_llama(vocab_size: int, *, hidden: int = 64, layers: int = 2, heads: int = 4, kv_heads: int = 2,
               seed: int = 0) -> Any:
    """Random LlamaForCausalLM with tied embeddings (as Llama-3.2-1B) and GQA."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=512, tie_word_embeddings=True)
    # HF initialises from the global generator; fork it so callers' random state is untouched.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def tiny_latent_model(tokenizer: Any, *, hidden: int = 32, layers: int = 2, seed: int = 0, **settings: Any) -> LatentLM:
    """LatentLM over a tiny random Llama whose vocabulary stops where the latent tokens start."""
    ids = add_latent_tokens(tokenizer)
    base = tiny_llama(min(ids.latent), hidden=hidden, layers=layers, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LatentLM(base, ids, LatentSettings(**settings))


def save_tiny_model(out: str | Path, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
                    task: str = "arithmetic") -> Path:
    """Write a loadable model directory (safetensors + tokenizer with the latent tokens)."""
    if hidden % heads or heads % 2:
        raise ValueError(f"--hidden {hidden} must be a multiple of --heads {heads}, and heads even (2 KV groups)")
    tokenizer = synthetic_tokenizer(task)
    model = tiny_llama(len(tokenizer), hidden=hidden, layers=layers, heads=heads, kv_heads=heads // 2, seed=seed)
    add_latent_tokens(tokenizer)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
