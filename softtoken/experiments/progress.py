"""Progress trackers for the command line."""

from __future__ import annotations

from collections.abc import Mapping

from tqdm import tqdm

# Short names for the progress bar postfix.
POSTFIX_KEYS = {"loss/target": "loss", "loss/total": "loss", "relax/tau_mean": "tau",
                "eval/best_lcs_ratio": "best_lcs", "eval/accuracy": "accuracy"}


class ProgressBarTracker:
    """A tqdm bar over optimiser steps showing loss, mean temperature and the best discrete LCS (inversion)
    or the loss and the last validation accuracy (latent training).

    `disable=None` shows the bar on terminals only."""

    def __init__(self, total: int | None, description: str = "invert", disable: bool | None = False) -> None:
        self.bar = tqdm(total=total, desc=description, unit="step", dynamic_ncols=True, disable=disable)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.bar.update(step - self.bar.n)
        shown = {short: f"{metrics[key]:.3g}" for key, short in POSTFIX_KEYS.items() if key in metrics}
        self.bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        self.bar.close()
