"""Adaptive latent reasoning (arXiv 2511.21581): latent model, SFT, GRPO, evaluation. See docs/latent.md."""
