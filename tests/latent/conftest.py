"""Tiny random Llama + offline word tokenizer shared by the latent tests."""

from __future__ import annotations

import pytest
import torch

from softtoken.latent.data import SyntheticConfig, generate_synthetic
from softtoken.latent.tiny import synthetic_tokenizer, tiny_latent_model
from softtoken.latent.tokens import add_latent_tokens

# Tiny ops on a shared 2-core machine: one intra-op thread is ~6x faster than two (no spin-waiting).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tokenizer():
    tok = synthetic_tokenizer()
    add_latent_tokens(tok)
    return tok


@pytest.fixture(scope="session")
def token_ids(tokenizer):
    return add_latent_tokens(tokenizer)


@pytest.fixture
def latent_model(tokenizer):
    return tiny_latent_model(tokenizer).eval()


@pytest.fixture(scope="session")
def rows():
    return generate_synthetic(SyntheticConfig(num_examples=64, max_steps=3, max_operand=9, seed=1))
