"""Sweep specs: YAML -> typed spec -> validated grid -> runs keyed by (method, config hash, seed, target id).

    name: demo
    model: null                      # HF id or directory; null = embedded model; --model overrides
    dataset: {path: targets.json}    # or {generate: {k_max: 6, ...}} / {reconstruction: {...}}
    prompt_length: 10
    seeds: [10, 20]
    budget: {steps: 200, seconds: null}
    methods:
      - label: DLMI(tau=100)
        preset: dlmi-paper           # or method: dlmi
        options: {batch_size: 8}
        grid: {temperature: [1, 100]}
        reference: {gradient_estimator: stgs}   # recorded for hparams-table only, never passed on
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from softtoken.configcheck import check_types
from softtoken.data.targets import CONTEXT_KEYS
from softtoken.lm.frame import check_frame_options
from softtoken.lm.token_classes import check_vocabulary_limits

TOP_KEYS = {"name", "kind", "model", "dataset", "prompt_length", "seeds", "budget", "methods", "device", "dtype",
            "threads_per_run", "allowed", "banned", "paired_seeds"}
SPEC_KINDS = ("inversion", "latent")  # `kind:` of a spec; inversion when absent (latent: latent_spec.py)
METHOD_KEYS = {"label", "method", "preset", "options", "grid", "seeds", "budget", "reference"}
DATASET_KEYS = {"path", "generate", "reconstruction", "limit", "ids", "context"}


class SpecError(ValueError):
    """A spec is invalid; the message lists every problem found, one per line."""

    def __init__(self, errors: Sequence[str]) -> None:
        self.errors = list(errors)
        super().__init__("invalid spec:\n" + "\n".join(f"  - {e}" for e in self.errors))


@dataclass(frozen=True, kw_only=True)
class BudgetSpec:
    steps: int | None = None  # optimiser steps per run; None: the method config's own
    seconds: float | None = None  # wall-clock seconds per run; None: unlimited
    forward_tokens: int | None = None  # compute per run (positions through the model); None: unlimited

    def __post_init__(self) -> None:
        check_types(self)
        if self.forward_tokens is not None and self.forward_tokens < 1:
            raise ValueError(f"budget.forward_tokens must be an integer >= 1, got {self.forward_tokens!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"budget.steps must be an integer >= 1, got {self.steps!r}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"budget.seconds must be > 0, got {self.seconds!r}")


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    path: str | None = None  # reference JSON, .jsonl or text file (relative to the spec file)
    generate: Mapping[str, Any] | None = None  # RankKConfig fields
    reconstruction: Mapping[str, Any] | None = None  # ReconstructionConfig fields (a file source: as `path`)
    limit: int | None = None  # keep the first N targets
    ids: tuple[str, ...] | None = None  # keep these target ids
    base_dir: str = "."  # the spec file's directory; a relative `path` is read from there
    context: Mapping[str, Any] = field(default_factory=dict)  # frame options of every target (CONTEXT_KEYS);
    # a target's own fields win. Generated sets are generated in this context (e.g. chat replies).

    @property
    def resolved_path(self) -> Path | None:
        if self.path is None:
            return None
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else Path(self.base_dir) / path

    def __post_init__(self) -> None:
        check_types(self)
        sources = [s for s in ("path", "generate", "reconstruction") if getattr(self, s) is not None]
        if len(sources) != 1:
            raise ValueError(f"dataset needs exactly one of path, generate, reconstruction; got {sources or 'none'}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"dataset.limit must be >= 1, got {self.limit}")
        unknown = sorted(set(self.context) - set(CONTEXT_KEYS))
        if unknown:
            raise ValueError(f"dataset.context: unknown key(s) {unknown}; valid: {list(CONTEXT_KEYS)}")
        check_frame_options(**self.context)


@dataclass(frozen=True, kw_only=True)
class MethodSpec:
    label: str
    method: str | None = None
    preset: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the spec's seeds
    budget: BudgetSpec | None = None  # None: the spec's budget
    reference: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_types(self)
        if self.method is None and self.preset is None:
            raise ValueError(f"method entry {self.label!r} needs `method` or `preset`")
        empty = [k for k, v in self.grid.items() if len(v) == 0]
        if empty:
            raise ValueError(f"method entry {self.label!r}: grid values must be non-empty lists, empty: {empty}")

    def grid_points(self) -> list[dict[str, Any]]:
        """Cartesian product of the grid (one empty point when there is no grid)."""
        names = sorted(self.grid)
        return [dict(zip(names, values)) for values in itertools.product(*(self.grid[n] for n in names))]


@dataclass(frozen=True, kw_only=True)
class SweepSpec:
    name: str
    dataset: DatasetSpec
    methods: tuple[MethodSpec, ...]
    model: str | None = None  # None: the embedded default model
    prompt_length: int = 10
    seeds: tuple[int, ...] = (0,)
    budget: BudgetSpec = field(default_factory=BudgetSpec)
    device: str = "cpu"
    dtype: str = "float32"
    threads_per_run: int | None = None  # torch threads in each run; None: 1 in worker processes
    allowed: str | None = None  # prompt vocabulary: a token class (ascii, printable, words, decodable), first:N, a file
    banned: tuple[str, ...] = ()  # texts whose tokens leave the prompt vocabulary
    # Common random numbers: every row's run of a target and seed gets the same run seed (the same random start),
    # so two rows differ only where their configs act, and a lever that acts rarely shows run by run.
    paired_seeds: bool = False

    def __post_init__(self) -> None:
        check_types(self)
        check_vocabulary_limits(self.allowed, self.banned)
        if self.prompt_length < 1:
            raise ValueError(f"prompt_length must be >= 1, got {self.prompt_length}")
        if not self.seeds:
            raise ValueError("seeds must be a non-empty list")
        if not self.methods:
            raise ValueError("methods must be a non-empty list")
        labels = [m.label for m in self.methods]
        duplicates = sorted({label for label in labels if labels.count(label) > 1})
        if duplicates:
            raise ValueError(f"method labels must be unique, repeated: {duplicates}")


# ----------------------------------------------------------------------------- parsing
def _check_keys(data: Mapping[str, Any], valid: set[str], where: str, errors: list[str]) -> None:
    unknown = sorted(set(data) - valid)
    if unknown:
        errors.append(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")


def _build(cls: type, where: str, errors: list[str], **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        errors.append(f"{where}: {err}")
        return None


def _seeds(value: Any) -> tuple:
    """`seeds: [1, 2]` or a bare `seeds: 1`; the spec classes check that every seed is an int."""
    return tuple(value) if isinstance(value, list) else (value,)


def _parse_budget(data: Any, where: str, errors: list[str]) -> BudgetSpec | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        errors.append(f"{where}: must be a mapping with steps, seconds and/or forward_tokens, got {data!r}")
        return None
    _check_keys(data, {"steps", "seconds", "forward_tokens"}, where, errors)
    return _build(BudgetSpec, where, errors, steps=data.get("steps"), seconds=data.get("seconds"),
                  forward_tokens=data.get("forward_tokens"))


def _parse_method(data: Any, index: int, errors: list[str]) -> MethodSpec | None:
    where = f"methods[{index}]"
    if isinstance(data, str):
        data = {"method": data}  # a bare name: a registered method or a preset
    if not isinstance(data, Mapping):
        errors.append(f"{where}: must be a mapping or a method/preset name, got {data!r}")
        return None
    _check_keys(data, METHOD_KEYS, where, errors)
    grid = data.get("grid") or {}
    if not isinstance(grid, Mapping):
        errors.append(f"{where}: grid must be a mapping of option names to lists, got {grid!r}")
        return None
    bad_grid = [k for k, v in grid.items() if not isinstance(v, list)]
    if bad_grid:
        errors.append(f"{where}: grid values must be lists, not for {bad_grid}")
        return None
    label = str(data.get("label") or data.get("preset") or data.get("method") or f"method{index}")
    seeds = data.get("seeds")
    return _build(
        MethodSpec, f"{where} ({label})", errors, label=label, method=data.get("method"), preset=data.get("preset"),
        options=data.get("options") or {}, grid={k: tuple(v) for k, v in grid.items()},
        seeds=None if seeds is None else _seeds(seeds),
        budget=_parse_budget(data.get("budget"), f"{where}.budget", errors), reference=data.get("reference") or {},
    )


def _resolve_source(reconstruction: Any, base_dir: Path) -> Any:
    """A relative reconstruction text `source` is read from the spec file's directory, like `path`."""
    if not isinstance(reconstruction, Mapping):
        return reconstruction
    source = reconstruction.get("source", "random")
    if not isinstance(source, str) or source == "random":
        return reconstruction
    path = Path(source).expanduser()
    return {**reconstruction, "source": str(path if path.is_absolute() else base_dir / path)}


def _parse_dataset(data: Any, base_dir: Path, errors: list[str]) -> DatasetSpec | None:
    if isinstance(data, str):
        data = {"path": data}
    if not isinstance(data, Mapping):
        errors.append(f"dataset: must be a path or a mapping, got {data!r}")
        return None
    _check_keys(data, DATASET_KEYS, "dataset", errors)
    path = data.get("path")
    ids = data.get("ids")
    return _build(DatasetSpec, "dataset", errors, path=None if path is None else str(path), base_dir=str(base_dir),
                  generate=data.get("generate"),
                  reconstruction=_resolve_source(data.get("reconstruction"), base_dir), limit=data.get("limit"),
                  ids=None if ids is None else tuple(str(i) for i in ids), context=data.get("context") or {})


def parse_spec(data: Any, base_dir: Path = Path(".")) -> SweepSpec:
    """Turn a YAML mapping into a SweepSpec; every structural problem is collected into one SpecError."""
    if not isinstance(data, Mapping):
        raise SpecError([f"a spec must be a YAML mapping, got {type(data).__name__}"])
    errors: list[str] = []
    _check_keys(data, TOP_KEYS, "spec", errors)
    for key in ("dataset", "methods"):
        if key not in data:
            errors.append(f"spec: missing required key {key!r}")
    methods_raw = data.get("methods") or []
    if not isinstance(methods_raw, list):
        errors.append("methods: must be a list of method entries")
        methods_raw = []
    methods = [_parse_method(m, i, errors) for i, m in enumerate(methods_raw)]
    dataset = _parse_dataset(data["dataset"], base_dir, errors) if "dataset" in data else None
    budget = _parse_budget(data.get("budget"), "budget", errors) or BudgetSpec()
    if errors:
        raise SpecError(errors)
    seeds = data.get("seeds", [0])
    spec = _build(
        SweepSpec, "spec", errors, name=str(data.get("name", "sweep")), dataset=dataset, methods=tuple(methods),
        model=data.get("model"), prompt_length=data.get("prompt_length", 10),
        seeds=_seeds(seeds), budget=budget,
        device=str(data.get("device", "cpu")), dtype=str(data.get("dtype", "float32")),
        threads_per_run=data.get("threads_per_run"), allowed=data.get("allowed"),
        banned=tuple(data["banned"]) if isinstance(data.get("banned"), list) else data.get("banned", ()),
        paired_seeds=data.get("paired_seeds", False),
    )
    if errors:
        raise SpecError(errors)
    return spec


def read_spec_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"spec file not found: {str(path)!r}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError([f"{path.name}: not valid YAML ({str(err).splitlines()[0]})"]) from err


def spec_kind(data: Any) -> str:
    """The `kind:` of a spec read from YAML: inversion (the default) or latent."""
    kind = data.get("kind", "inversion") if isinstance(data, Mapping) else "inversion"
    if kind not in SPEC_KINDS:
        raise SpecError([f"spec: kind must be one of {list(SPEC_KINDS)}, got {kind!r}"])
    return kind


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    data = read_spec_file(path)
    kind = spec_kind(data)
    if kind != "inversion":
        raise SpecError([f"{path.name} is a {kind} spec; only `softtoken sweep` runs it"])
    return parse_spec(data, path.parent)


# ----------------------------------------------------------------------------- grid points and keys
@dataclass(frozen=True, kw_only=True)
class ConfigPoint:
    """One validated configuration of one method entry: what a run needs to rebuild its method."""

    label: str
    method: str  # registered method name
    preset: str | None
    options: Mapping[str, Any]  # entry options merged with the grid point
    grid_point: Mapping[str, Any]
    config: Mapping[str, Any]  # the full resolved method config
    defaults: Mapping[str, Any]  # each config field's default, as in `config` (see experiments/carryover.py)
    config_hash: str
    seeds: tuple[int, ...]
    budget: BudgetSpec


def config_hash(method: str, config: Mapping[str, Any], *, prompt_length: int, budget: BudgetSpec,
                model: str | None, vocabulary: Mapping[str, Any] | None = None, paired_seeds: bool = False) -> str:
    """Stable 12-hex hash of everything besides seed and target that changes a run's outcome. A prompt
    vocabulary limit and paired seeds enter only when set, so the hashes of other runs stay as they were."""
    payload = {"method": method, "config": config, "prompt_length": prompt_length, "budget": asdict(budget),
               "model": model, **({"vocabulary": dict(vocabulary)} if vocabulary else {}),
               **({"paired_seeds": True} if paired_seeds else {})}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def field_defaults(config: Any) -> dict[str, Any]:
    """The default of each field of the config dataclass `config` that has one, as in `asdict`; for a field
    holding a config of its own, that config's field defaults."""
    defaults = {}
    for item in fields(config):
        if item.default is not MISSING:
            value = item.default
        elif item.default_factory is not MISSING:
            value = item.default_factory()
        else:
            continue
        defaults[item.name] = field_defaults(value) if is_dataclass(value) else value
    return defaults


def vocabulary_limits(spec: SweepSpec) -> dict[str, Any] | None:
    """The spec's prompt vocabulary limits, or None when the whole vocabulary is allowed."""
    if spec.allowed is None and not spec.banned:
        return None
    return {"allowed": spec.allowed, "banned": list(spec.banned)}


def resolve_points(spec: SweepSpec) -> list[ConfigPoint]:
    """Build every grid point's method; raise one SpecError listing every invalid point before anything runs."""
    from softtoken.methods import METHODS, PRESETS, build_method  # keeps spec parsing free of torch imports

    errors, points = [], []
    for entry in spec.methods:
        method, preset = entry.method, entry.preset
        if preset is None and method not in METHODS and method in PRESETS:
            method, preset = None, method  # `method: dlmi-paper` names a preset
        for point in entry.grid_points():
            options = {**entry.options, **point}
            try:
                runner = build_method(method, preset, options)
            except ValueError as err:
                where = f"{entry.label} {point}" if point else entry.label
                errors.append(f"{where}: {str(err).splitlines()[0]}")
                continue
            config = asdict(runner.config)
            budget = entry.budget or spec.budget
            points.append(ConfigPoint(
                label=entry.label, method=runner.name, preset=preset, options=options, grid_point=point,
                config=config, defaults=field_defaults(runner.config), seeds=entry.seeds or spec.seeds, budget=budget,
                config_hash=config_hash(runner.name, config, prompt_length=spec.prompt_length, budget=budget,
                                        model=spec.model, vocabulary=vocabulary_limits(spec),
                                        paired_seeds=spec.paired_seeds),
            ))
    if errors:
        raise SpecError(errors)
    return points


def run_key(method: str, config_hash_: str, seed: int, target_id: str, context: Mapping[str, Any] | None = None) -> str:
    """A run's identity; a target in a context keys on that context too (a bare target's key is unchanged)."""
    key = f"{method}/{config_hash_}/{seed}/{target_id}"
    if context:
        key += "@" + hashlib.sha256(json.dumps(dict(context), sort_keys=True).encode()).hexdigest()[:8]
    return key


def run_seed(key: str) -> int:
    """A 31-bit seed derived from the run key alone, so a run does not depend on order or neighbours."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big") & 0x7FFFFFFF


def task_seed(spec: SweepSpec, key: str, seed: int, target_id: str, context: Mapping[str, Any] | None) -> int:
    """The run seed of run `key`: from the key, or with `paired_seeds` from its seed, target and context alone."""
    return run_seed(run_key("paired", "-", seed, target_id, context) if spec.paired_seeds else key)
