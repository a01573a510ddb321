"""Smoke test on the embedded SmolLM2-135M: LoRA latent SFT steps, frozen backbone, real tokenizer."""

import pytest
import torch

from softtoken.latent import options as opts
from softtoken.latent.batching import collate, student_example, teacher_example
from softtoken.latent.checkpoint import load_latent_model
from softtoken.latent.data import SyntheticConfig, generate_synthetic, prepare_sft_rows
from softtoken.latent.lora import make_optimizer, prepare_trainable
from softtoken.latent.sft import sft_loss

pytestmark = pytest.mark.integration

TRAIN = ("latent_flat_2/remove_last_reasoning_step/codi_loss_20/calc_smooth_l1/norm_layerwise_std/"
         "intermediate_block_llama_3_12/shift_target_token_one")
LORA = "llama_target_modules/latent_modules_to_save/r_8/alpha_16/dropout_0p1"


def test_smollm2_lora_latent_sft_steps_train_adapters_only():
    model, tokenizer = load_latent_model(None, opts.resolve("latent", "recurrent_filter_MLP"))
    prepare_trainable(model, opts.resolve("lora", LORA), latent_run=True)
    config = opts.resolve("sft", TRAIN)
    rows = prepare_sft_rows(generate_synthetic(SyntheticConfig(num_examples=4, max_steps=2, seed=0)), config)
    teacher = collate([teacher_example(tokenizer, model.ids, r, "", True) for r in rows[:2]], model.ids.pad)
    student = collate([student_example(tokenizer, model.ids, r, True, False) for r in rows[:2]], model.ids.pad)
    assert tokenizer.decode(teacher.ids[0, teacher.target[0]]) == " "  # KD target precedes the digits
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_B" in n}
    optimizer = make_optimizer(model, 1e-3, 0.0, False)
    model.train()
    for _ in range(2):
        loss, metrics = sft_loss(model, teacher, student, config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert any(not torch.equal(params[n], v) for n, v in adapters.items())
