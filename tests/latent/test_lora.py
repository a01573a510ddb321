"""LoRA mode: the backbone stays frozen, latent modules train in full, and the merged export matches."""

import torch

from softtoken.latent import options as opts
from softtoken.latent.batching import collate, student_example
from softtoken.latent.checkpoint import export_model, load_latent_model
from softtoken.latent.lora import prepare_trainable
from softtoken.latent.tiny import tiny_latent_model

LORA = opts.resolve("lora", "llama_target_modules/latent_modules_to_save/r_4/alpha_8")


def test_lora_trains_adapters_and_latent_modules_only(tokenizer):
    model = prepare_trainable(tiny_latent_model(tokenizer), LORA, latent_run=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable) and "filter.0.weight" in trainable and "special_in" in trainable
    assert not any(n.startswith("base.") and "lora_" not in n for n in trainable)


def test_lora_export_merges_and_reloads_same_logits(tokenizer, token_ids, rows, tmp_path):
    model = prepare_trainable(tiny_latent_model(tokenizer), LORA, latent_run=True).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or name.startswith(("filter", "special")):
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(name))))
    tokenizer.save_pretrained(tmp_path / "tok")  # export needs a saveable tokenizer
    export_model(tmp_path / "export", model, tokenizer)
    loaded, _ = load_latent_model(str(tmp_path / "export"))
    batch = collate([student_example(tokenizer, token_ids, {**r, "num_latent": 2}, True, False) for r in rows[:3]],
                    token_ids.pad)
    expected, got = model(batch.ids, batch.mask).logits, loaded(batch.ids, batch.mask).logits
    finite = torch.isfinite(expected)
    assert torch.equal(finite, torch.isfinite(got)) and torch.allclose(expected[finite], got[finite], atol=1e-4)
