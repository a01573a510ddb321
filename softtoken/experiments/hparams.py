"""Print a sweep spec back as the reference's markdown hyper-parameter table (one column per method entry).

Rows are the union of every entry's options, grid keys and `reference` values, plus the spec-level
`dataset_path`, `model_name`, `seed` and `seq_len`, sorted by name; `[]` marks a name a column does
not set. Descriptions come from the DLMI reference's table where the name appears there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from softtoken.experiments.spec import MethodSpec, SweepSpec

DESCRIPTIONS = {
    "baseline_backend": "Model backend for SODA/GCG: 'hf' (HuggingFace) or 'tl' (transformer_lens)",
    "batch_size": "Batch size for optimization",
    "bptt": "Whether to use backpropagation through time",
    "bptt_hidden_state_conditioning": "Whether to condition BPTT on hidden states",
    "bptt_learnable_temperature": "Whether to learn the BPTT temperature parameter",
    "bptt_stgs_hard": "Whether to use hard ST-GS for BPTT",
    "bptt_temperature": "Temperature for BPTT Gumbel-Softmax",
    "dataset_path": "Path to the dataset file containing target sentences",
    "decouple_learnable_temperature": "Whether to learn multiple decouple temperature parameters, one for each "
                                      "learnable input.",
    "epochs": "Number of optimization epochs",
    "gradient_checkpointing": "Whether to use gradient checkpointing",
    "gradient_estimator": "Gradient estimator to use for optimizing the discrete inputs",
    "learnable_temperature": "Whether to learn the temperature parameter",
    "learning_rate": "Learning rate for optimization",
    "losses": "Loss function(s) to use for optimization",
    "method": "Optimization method to use",
    "model_name": "Name of the language model to use",
    "model_precision": "Precision of the language model to use",
    "num_workers": "Number of parallel workers (1 = sequential)",
    "output_dir": "Directory to save optimization results",
    "plot_every": "Frequency of plotting loss curves",
    "reinforce_baseline_beta": "Exponential moving average coefficient for the REINFORCE baseline",
    "reinforce_grad_variance_period": "Epoch interval between two REINFORCE gradient variance measurements",
    "reinforce_grad_variance_samples": "Number of REINFORCE gradient samples to use when estimating variance "
                                       "(>=2 enables metric)",
    "reinforce_reward_scale": "Scaling factor applied to the REINFORCE policy loss",
    "reinforce_use_baseline": "Enable running baseline to reduce REINFORCE variance",
    "seed": "Random seed for reproducibility",
    "seq_len": "Length of the prompt sequence to optimize",
    "soda_beta1": "SODA: Adam beta1 parameter",
    "soda_beta2": "SODA: Adam beta2 parameter",
    "soda_bias_correction": "SODA: use standard Adam bias correction",
    "soda_decay_rate": "SODA: embedding decay rate per epoch",
    "soda_init_strategy": "SODA: embedding initialization strategy",
    "soda_reinit_epoch": "SODA: embedding reinitialization frequency",
    "soda_reset_epoch": "SODA: optimizer state reset frequency",
    "stgs_grad_bias_period": "Epoch interval between two STGS bias measurements",
    "stgs_grad_bias_reference_baseline_beta": "EMA beta for the reference REINFORCE baseline during bias estimation",
    "stgs_grad_bias_reference_reward_scale": "Reward scale to apply in the reference REINFORCE bias estimator",
    "stgs_grad_bias_reference_samples": "Number of REINFORCE reference samples per bias estimate (>=1 enables "
                                        "metric)",
    "stgs_grad_bias_reference_use_baseline": "Enable REINFORCE baseline when computing STGS bias",
    "stgs_grad_bias_samples": "Number of STGS gradient samples to average when estimating bias (>=1 enables metric)",
    "stgs_grad_variance_period": "Epoch interval between two gradient variance measurements",
    "stgs_grad_variance_samples": "Number of STGS gradient samples to use when estimating variance (>=2 enables "
                                  "metric)",
    "stgs_hard": "Whether to use hard ST-GS",
    "teacher_forcing": "Use teacher forcing for faster training (single forward pass instead of autoregressive). "
                       "Changes loss semantics - predicts next token given correct prefix rather than own "
                       "generations.",
    "temperature": "Temperature for Gumbel-Softmax",
}


def render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def column_values(spec: SweepSpec, entry: MethodSpec) -> dict[str, list[Any]]:
    """Name -> list of values for one method entry (a grid key lists all its values)."""
    values: dict[str, list[Any]] = {name: [v] for name, v in entry.reference.items()}
    values.update({name: [v] for name, v in entry.options.items()})
    values.update({name: list(v) for name, v in entry.grid.items()})
    values.setdefault("seed", list(entry.seeds or spec.seeds))
    values.setdefault("seq_len", [spec.prompt_length])
    if spec.model is not None:
        values.setdefault("model_name", [spec.model])
    if spec.dataset.path is not None:
        values.setdefault("dataset_path", [spec.dataset.path])
    return values


def _cell(values: list[Any] | None) -> str:
    return "[" + ", ".join(render_value(v) for v in values or []) + "]"


def hparams_table(spec: SweepSpec, descriptions: Mapping[str, str] = DESCRIPTIONS) -> str:
    """The markdown table, one row per hyper-parameter name and one column per method entry."""
    columns = [column_values(spec, entry) for entry in spec.methods]
    names = sorted({name for column in columns for name in column})
    lines = ["| Hyperparameter | Description | " + " | ".join(e.label for e in spec.methods) + " |",
             "|---|---|" + "---|" * len(spec.methods)]
    for name in names:
        cells = [_cell(column.get(name)) for column in columns]
        lines.append(f"| {name} | {descriptions.get(name, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
