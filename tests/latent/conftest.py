"""Tiny random Llama + offline word tokenizer shared by the latent tests."""

from __future__ import annotations

import pytest
import torch

from softtoken.latent.data import SyntheticConfig, generate_synthetic
from softtoken.latent.model import LatentLM
from softtoken.latent.options import LatentSettings
from softtoken.latent.tiny import synthetic_tokenizer, tiny_llama
from softtoken.latent.tokens import add_latent_tokens


@pytest.fixture(scope="session")
def tokenizer():
    tok = synthetic_tokenizer()
    tok.base_size = len(tok)  # the backbone's vocab; latent ids come after it
    add_latent_tokens(tok)
    return tok


@pytest.fixture(scope="session")
def token_ids(tokenizer):
    return add_latent_tokens(tokenizer)


def make_latent(tokenizer, *, hidden: int = 32, layers: int = 2, seed: int = 0, **settings) -> LatentLM:
    base = tiny_llama(tokenizer.base_size, hidden=hidden, layers=layers, seed=seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return LatentLM(base, add_latent_tokens(tokenizer), LatentSettings(**settings))


@pytest.fixture
def latent_model(tokenizer):
    return make_latent(tokenizer).eval()


@pytest.fixture(scope="session")
def rows():
    return generate_synthetic(SyntheticConfig(num_examples=64, max_steps=3, max_operand=9, seed=1))
