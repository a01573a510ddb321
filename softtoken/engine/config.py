"""StageConfig: everything one stage of the gradient optimiser needs, validated at construction.

    config = StageConfig(steps=200, trajectories=4, prompt_length=8,
                         temperature=Ramp(start=1.0, end=0.1, schedule="exponential"))
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from softtoken.configcheck import as_tuple, check_keys, check_types, from_mapping
from softtoken.engine.gradients import MERGERS, NORM_ALIGNMENTS, NORMALIZATIONS
from softtoken.engine.optimizers import OptimizerConfig
from softtoken.engine.schedules import Ramp
from softtoken.lm.loading import COMPUTE_DTYPES
from softtoken.relax import GUMBEL_KINDS, HARD_METHODS
from softtoken.relax.temperature import THETA_INITS

DECODES: tuple[str, ...] = ("argmax", "categorical")
INITS: tuple[str, ...] = ("zeros", "randn")
LEARNABLE_TEMPERATURES: tuple[str, ...] = ("none", "shared", "per_position")


@dataclass(frozen=True, kw_only=True)
class WeightSchedule:
    """Overrides the static weight of the objective with this label, step by step."""

    label: str  # Objective.label it applies to; an unknown label warns at run time and is ignored
    ramp: Ramp  # weight values, both endpoints >= 0

    def __post_init__(self) -> None:
        check_types(self)
        if not self.label:
            raise ValueError(f"WeightSchedule.label must be non-empty, got {self.label!r}")
        self.ramp.within(f"WeightSchedule({self.label!r}).ramp", 0.0, math.inf)


@dataclass(frozen=True, kw_only=True)
class PositionBias:
    """Adds `value` to the initial logit of `token_id` (a model id) at `position`."""

    position: int  # 0-based prompt position
    token_id: int  # model token id; must be in the prompt vocabulary
    value: float = 10.0  # logit offset, finite

    def __post_init__(self) -> None:
        check_types(self)
        if self.position < 0:
            raise ValueError(f"PositionBias.position must be >= 0, got {self.position}")
        if not math.isfinite(self.value):
            raise ValueError(f"PositionBias.value must be finite, got {self.value}")


@dataclass(frozen=True, kw_only=True)
class StageConfig:
    """One stage: B independent trajectories of logits (B, L, V) descended for `steps` steps."""

    steps: int = 100  # gradient steps, >= 1
    trajectories: int = 1  # B, independent parallel runs, >= 1
    prompt_length: int | None = None  # L; None: from the initial logits or initial_text
    lr: float = 0.1  # base learning rate, > 0
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    soft: Ramp = field(default_factory=lambda: Ramp.fixed(1.0))  # one-hot (0) <-> softmax (1) blend, in [0, 1]
    hard: Ramp = field(default_factory=lambda: Ramp.fixed(0.0))  # straight-through share, in [0, 1]
    temperature: Ramp = field(default_factory=lambda: Ramp.fixed(1.0))  # softmax temperature, > 0
    scale_lr_by_temperature: bool = False  # lr * max((1 - soft) + soft * T, min_lr_scale)
    min_lr_scale: float = 0.0  # floor of that scale, >= 0
    weight_schedules: tuple[WeightSchedule, ...] = ()  # at most one per label
    norm_alignment: str = "none"  # none / unit / match_first, applied before the weights
    zero_norm_eps: float = 0.0  # match_first: gradients with a smaller norm are zeroed, >= 0
    merger: str = "weighted_sum"  # a key of MERGERS
    normalize: str = "unit"  # none / unit / sqrt_length, applied to the merged gradient
    fixed_positions: tuple[int, ...] = ()  # rows that never change and always feed their argmax token
    sequence_bias: tuple[PositionBias, ...] = ()  # added to the initial logits
    initial_text: str | None = None  # start from this text's tokens (one-hot * initial_scale)
    initial_scale: float = 10.0  # logit of the initial text's token, > 0
    gumbel_init: bool = False  # add Gumbel noise / divisor to the initial logits (fixed rows excluded)
    gumbel_init_divisor: float = 1.0  # > 0; larger means smaller noise
    save_best: bool = True  # return each trajectory's lowest-loss logits instead of the last ones
    track_every: int = 1  # snapshot every k steps (and at the last step), >= 1
    score_discrete: bool = False  # snapshots also score the argmax prompt itself (K more forward passes)
    decode: str = "argmax"  # argmax / categorical decoding of logits to tokens
    seed: int = 0  # seeds the stage's generator when none is passed in, >= 0
    samples: int = 1  # Gumbel samples of each trajectory per step; its loss is their mean, >= 1
    gumbel_scale: float = 0.0  # per-step Gumbel noise added to the logits before relaxing (0: none), >= 0
    gumbel_kind: str = "standard"  # standard, or truncated (u <= 0.999) as the DLMI reference draws it
    hard_method: str = "argmax"  # straight-through token: argmax (textbook ST-GS) or categorical (reference)
    init: str = "zeros"  # start without initial logits/text: zeros, or randn N(0, init_std^2)
    init_std: float = 1.0  # > 0
    learnable_temperature: str = "none"  # none / shared / per_position: tau = tau0 (1 + tanh theta), theta learnt
    temperature_theta_init: str = "uniform"  # uniform: theta ~ U[0,1) (DLMI reference); zero: tau starts at tau0
    temperature_lr: float | None = None  # lr of theta and of objective parameters; None: lr
    compute_dtype: str = "float32"  # objectives' model passes under autocast (bfloat16: AVX512-BF16/AMX CPUs, GPUs)
    compile_model: bool = False  # decoder layers through torch.compile: the first step pays ~30 s here (docs/engine.md)

    def __post_init__(self) -> None:
        check_types(self)
        self._check_numbers()
        self._check_choices()
        self._check_positions()

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (tuples become lists), so a config is one YAML/JSON document."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageConfig:
        """Inverse of to_dict; unknown keys and ill-formed values raise one line naming them."""
        check_keys(cls, data, "StageConfig")
        values = dict(data)
        for name in ("soft", "hard", "temperature"):
            if name in values:
                values[name] = from_mapping(Ramp, values[name], f"StageConfig.{name}")
        if "optimizer" in values:
            values["optimizer"] = from_mapping(OptimizerConfig, values["optimizer"], "StageConfig.optimizer")
        values["weight_schedules"] = tuple(
            _weight_schedule(w) for w in as_tuple(values.get("weight_schedules", ()), "StageConfig.weight_schedules"))
        values["sequence_bias"] = tuple(from_mapping(PositionBias, b, "StageConfig.sequence_bias")
                                        for b in as_tuple(values.get("sequence_bias", ()), "StageConfig.sequence_bias"))
        values["fixed_positions"] = as_tuple(values.get("fixed_positions", ()), "StageConfig.fixed_positions")
        return cls(**values)

    def _check_numbers(self) -> None:
        for name in ("steps", "trajectories", "track_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"StageConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.prompt_length is not None and self.prompt_length < 1:
            raise ValueError(f"StageConfig.prompt_length must be >= 1 or None, got {self.prompt_length}")
        if self.samples < 1:
            raise ValueError(f"StageConfig.samples must be >= 1, got {self.samples}")
        if not (math.isfinite(self.gumbel_scale) and self.gumbel_scale >= 0):
            raise ValueError(f"StageConfig.gumbel_scale must be finite and >= 0, got {self.gumbel_scale}")
        if self.temperature_lr is not None and not self.temperature_lr > 0:
            raise ValueError(f"StageConfig.temperature_lr must be > 0 or None, got {self.temperature_lr}")
        if self.learnable_temperature != "none" and self.temperature.start != self.temperature.end:
            raise ValueError(f"StageConfig: a learnable temperature starts at a fixed tau0, got {self.temperature}")
        for name in ("lr", "initial_scale", "gumbel_init_divisor", "init_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"StageConfig.{name} must be finite and > 0, got {value}")
        for name in ("min_lr_scale", "zero_norm_eps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"StageConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"StageConfig.seed must be >= 0, got {self.seed}")
        self.soft.within("StageConfig.soft", 0.0, 1.0)
        self.hard.within("StageConfig.hard", 0.0, 1.0)
        if not (self.temperature.start > 0 and self.temperature.end > 0):
            raise ValueError(f"StageConfig.temperature must stay > 0, got {self.temperature}")

    def _check_choices(self) -> None:
        choices = {"norm_alignment": NORM_ALIGNMENTS, "normalize": NORMALIZATIONS,
                   "merger": tuple(sorted(MERGERS)), "decode": DECODES, "gumbel_kind": GUMBEL_KINDS,
                   "hard_method": HARD_METHODS, "init": INITS, "learnable_temperature": LEARNABLE_TEMPERATURES,
                   "temperature_theta_init": THETA_INITS}
        choices["compute_dtype"] = COMPUTE_DTYPES
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"StageConfig.{name} must be one of {valid}, got {getattr(self, name)!r}")
        labels = [schedule.label for schedule in self.weight_schedules]
        if len(set(labels)) != len(labels):
            raise ValueError(f"StageConfig.weight_schedules has repeated labels: {sorted(labels)}")

    def _check_positions(self) -> None:
        if len(set(self.fixed_positions)) != len(self.fixed_positions) or any(p < 0 for p in self.fixed_positions):
            raise ValueError(f"StageConfig.fixed_positions must be distinct and >= 0, got {self.fixed_positions}")
        if self.prompt_length is None:
            return
        used = list(self.fixed_positions) + [bias.position for bias in self.sequence_bias]
        outside = sorted(p for p in used if p >= self.prompt_length)
        if outside:
            raise ValueError(f"StageConfig: positions {outside} are outside prompt_length={self.prompt_length}")


def _weight_schedule(data: Any) -> WeightSchedule:
    check_keys(WeightSchedule, data, "StageConfig.weight_schedules")
    ramp = from_mapping(Ramp, data["ramp"], "StageConfig.weight_schedules.ramp")
    return WeightSchedule(label=data["label"], ramp=ramp)
