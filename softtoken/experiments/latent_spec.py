"""Latent sweep specs: YAML -> typed spec -> entries whose option strings are resolved before anything runs.

    name: dial-demo
    kind: latent
    data: {task: dial, train_size: 2000, val_size: 100, test_size: 100, min_steps: 1, max_steps: 4}
                                     # or {path: DIR} with train/validation/test .jsonl (relative to this file)
    model: {tiny: {hidden: 64, layers: 2, heads: 4}}   # or an HF id / directory; null = embedded SmolLM2
    seeds: [0, 1, 2]
    runs:
      - label: CoT
        train: gsm8k-aug/batch_size_32/steps_500
        val: gsm8k-aug-val/max_new_tokens_96
        eval: {test: gsm8k-aug-test/max_new_tokens_96}   # optional: more evaluations of the final model
      - label: latent-3
        series: flat-k                 # optional: a line of the accuracy-vs-k figure (k read from latent_flat_<k>)
        latent: recurrent_filter_MLP
        train: gsm8k-aug/latent_flat_3/codi_loss_20/batch_size_32/steps_500
        val: gsm8k-aug-val/latent_thinking/max_new_tokens_16
      - label: latent-3+RL
        from: latent-3                 # GRPO from that entry's exported model, same seed
        grpo: lr_5e-4/beta_1e-3/steps_160/num_gen_8
        train: slice_proportion_15p/batch_size_64/rel_len_penalty_1e-1

An entry is GRPO when it has `grpo`, else SFT; `from: LABEL` starts it from that entry's final model
(same seed). A run is (entry, seed): the seed is appended to the training string as `seed_<n>` (data order, filter and LoRA init, dropout) and, for a `tiny` model,
also seeds the random model's init, so one seed is one model init plus one data order. The data is one
draw for the whole sweep (its own `seed`, default 0), so every run is scored on the same rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from softtoken.configcheck import check_types
from softtoken.experiments.spec import SpecError, read_spec_file, spec_kind
from softtoken.latent import options as opts
from softtoken.latent.runs import DEFAULT_VAL, task_splits

TOP_KEYS = {"name", "kind", "data", "model", "seeds", "runs", "threads_per_run"}
RUN_KEYS = {"label", "series", "from", "latent", "lora", "train", "grpo", "val", "eval"}
TINY_KEYS = {"hidden", "layers", "heads", "task"}
SIZE_KEYS = {"train_size": "train", "val_size": "validation", "test_size": "test"}
MAIN_EVAL = "val"  # the name of an entry's `val` evaluation in records and reports


@dataclass(frozen=True, kw_only=True)
class DataSpec:
    """A directory of splits, or a synthetic task generated once into the sweep's folder."""

    path: str | None = None  # resolved against the spec file's folder
    task: str | None = None  # a key of softtoken.latent.tasks.TASKS
    sizes: Mapping[str, int] = field(default_factory=dict)  # rows per split (SPLITS)
    seed: int = 0  # split i is drawn from seed + i, as `softtoken latent make-data`
    options: Mapping[str, Any] = field(default_factory=dict)  # the task's config fields (min_steps, ...)

    def __post_init__(self) -> None:
        check_types(self)
        if (self.path is None) == (self.task is None):
            raise ValueError("data needs exactly one of path (a directory) and task (generated)")
        if self.task is not None:
            task_splits(self.task, self.sizes, self.options, self.seed)  # every split's config is checked

    def fingerprint(self) -> str:
        """Names the folder a generated set is written to: other settings, another folder."""
        return digest(asdict(self))[:12]


@dataclass(frozen=True, kw_only=True)
class TinyModelSpec:
    """`softtoken latent make-tiny-model` settings; one model per seed, written once into the sweep's folder."""

    hidden: int = 64
    layers: int = 2
    heads: int = 4
    task: str = "arithmetic"  # the task whose words the tokenizer covers; defaults to the data's task

    def __post_init__(self) -> None:
        from softtoken.latent.tasks import get_task

        check_types(self)
        get_task(self.task)
        if self.layers < 1:
            raise ValueError(f"model.tiny.layers must be >= 1, got {self.layers}")
        # save_tiny_model's own check, made here so that a bad shape fails at spec load.
        if self.hidden < 1 or self.heads < 2 or self.hidden % self.heads or self.heads % 2:
            raise ValueError(f"model.tiny: hidden {self.hidden} must be a multiple of heads {self.heads}, and "
                             "heads even (2 KV groups)")


@dataclass(frozen=True, kw_only=True)
class LatentEntry:
    """One entry of `runs:` as written, defaults filled in."""

    label: str
    kind: str  # "sft" or "grpo"
    train: str
    latent: str | None  # SFT: "" = default settings; GRPO: None = the start model's saved settings
    lora: str = ""
    grpo: str = ""
    val: str
    evals: Mapping[str, str] = field(default_factory=dict)  # name -> eval option string
    parent: str | None = None  # `from`: the label of the entry whose final model this run starts from
    series: str | None = None

    def __post_init__(self) -> None:
        check_types(self)


@dataclass(frozen=True, kw_only=True)
class LatentPoint:
    """An entry with its option strings resolved: what a run needs besides its seed."""

    entry: LatentEntry
    configs: Mapping[str, Any]  # resolved configs by option group, without the seed
    config_hash: str  # covers configs, evaluations, data, model and the parent's hash
    mode: str  # "cot", "no-cot" or "latent" (what the final model answers with)
    k: int | None  # the flat latent count of a `series` entry
    depth: int  # 0 for runs from the spec's model; a run with `from` is one deeper than its parent


@dataclass(frozen=True, kw_only=True)
class LatentSweepSpec:
    name: str
    data: DataSpec
    model: str | None  # HF id or directory; None with `tiny` unset: the embedded SmolLM2
    tiny: TinyModelSpec | None
    seeds: tuple[int, ...]
    points: tuple[LatentPoint, ...]
    threads_per_run: int | None = None  # torch threads in each run; None: 1 in worker processes
    kind: str = "latent"  # saved in spec.json, where reports read which kind of sweep a folder holds

    def __post_init__(self) -> None:
        check_types(self)
        if not self.seeds:
            raise ValueError("seeds must be a non-empty list")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must differ, got {list(self.seeds)}")
        if self.threads_per_run is not None and self.threads_per_run < 1:
            raise ValueError(f"threads_per_run must be >= 1, got {self.threads_per_run}")


# ----------------------------------------------------------------------------- parsing
def digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _keys(data: Mapping[str, Any], valid: set[str], where: str, errors: list[str]) -> None:
    unknown = sorted(set(data) - valid)
    if unknown:
        errors.append(f"{where}: unknown key(s) {unknown}; valid: {sorted(valid)}")


def _parse_data(data: Any, base_dir: Path, errors: list[str]) -> DataSpec | None:
    if not isinstance(data, Mapping):
        errors.append(f"data: must be a mapping ({{path: DIR}} or {{task: NAME, ...}}), got {data!r}")
        return None
    if "path" in data:
        _keys(data, {"path"}, "data", errors)
        path = Path(str(data["path"])).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_dir():
            errors.append(f"data: directory not found: {str(path)!r}")
        return DataSpec(path=str(path))
    missing = sorted({"task", *SIZE_KEYS} - set(data))
    if missing:
        errors.append(f"data: missing key(s) {missing} (or give path: DIR)")
        return None
    options = {k: v for k, v in data.items() if k not in {"task", "seed", *SIZE_KEYS}}
    try:
        return DataSpec(task=data["task"], sizes={split: data[key] for key, split in SIZE_KEYS.items()},
                        seed=data.get("seed", 0), options=options)
    except (TypeError, ValueError) as err:
        errors.append(f"data: {str(err).splitlines()[0]}")
        return None


def _parse_model(data: Any, task: str | None, errors: list[str]) -> tuple[str | None, TinyModelSpec | None]:
    if data is None or isinstance(data, str):
        if data is not None and data.startswith((".", "/", "~")) and not Path(data).expanduser().exists():
            errors.append(f"model: path not found: {data!r}")
        return data, None
    if not isinstance(data, Mapping) or set(data) != {"tiny"} or not isinstance(data["tiny"], Mapping):
        errors.append(f"model: must be an HF id, a directory, null or {{tiny: {{hidden: ..., ...}}}}, got {data!r}")
        return None, None
    tiny = dict(data["tiny"])
    _keys(tiny, TINY_KEYS, "model.tiny", errors)
    if task is not None and tiny.setdefault("task", task) != task:
        errors.append(f"model.tiny.task {tiny['task']!r} differs from data.task {task!r}: the tokenizer would "
                      "not cover the data's words")
    try:
        return None, TinyModelSpec(**{k: v for k, v in tiny.items() if k in TINY_KEYS})
    except (TypeError, ValueError) as err:
        errors.append(f"model.tiny: {str(err).splitlines()[0]}")
        return None, None


def _option_string(data: Mapping[str, Any], key: str, default: str | None, where: str, errors: list[str]):
    value = data.get(key, default)
    if value is not None and not isinstance(value, str):
        errors.append(f"{where}: {key} must be an option string, got {value!r}")
        return default
    return value


def _parse_entry(data: Any, index: int, errors: list[str]) -> LatentEntry | None:
    where = f"runs[{index}]"
    if not isinstance(data, Mapping) or not isinstance(data.get("label"), str) or not data["label"]:
        errors.append(f"{where}: must be a mapping with a label and option strings, got {data!r}")
        return None
    where = f"{where} ({data['label']})"
    _keys(data, RUN_KEYS, where, errors)
    kind = "grpo" if "grpo" in data else "sft"  # `from` alone: SFT that starts from that entry's model
    strings = {key: _option_string(data, key, default, where, errors) for key, default in
               (("train", None), ("latent", "" if kind == "sft" else None), ("lora", ""), ("grpo", ""),
                ("val", DEFAULT_VAL[kind]))}
    if not strings["train"]:
        errors.append(f"{where}: needs a train option string")
        return None
    evals = data.get("eval") or {}
    if not isinstance(evals, Mapping) or not all(isinstance(v, str) for v in evals.values()):
        errors.append(f"{where}: eval must map names to eval option strings, got {evals!r}")
        return None
    if MAIN_EVAL in evals:
        errors.append(f"{where}: eval name {MAIN_EVAL!r} is the entry's `val` evaluation; use another name")
    try:
        return LatentEntry(label=data["label"], kind=kind, evals={str(k): v for k, v in evals.items()},
                           parent=data.get("from"), series=data.get("series"), **strings)
    except (TypeError, ValueError) as err:
        errors.append(f"{where}: {str(err).splitlines()[0]}")
        return None


# ----------------------------------------------------------------------------- resolution
_SEED_TOKEN = re.compile(r"(?:^|/)(seed_[^/]*)")


def _resolve_configs(entry: LatentEntry) -> dict[str, Any]:
    """The entry's configs without a seed; raises ValueError naming the option group and token."""
    for key in ("train", "grpo"):
        found = _SEED_TOKEN.search(getattr(entry, key))
        if found:
            raise ValueError(f"{key} sets the seed ({found[1]!r}); runs take theirs from the spec's `seeds`")
    configs = {"lora": opts.resolve("lora", entry.lora), "eval": opts.resolve("eval", entry.val)}
    if entry.kind == "sft":
        configs.update(latent=opts.resolve("latent", entry.latent), sft=opts.resolve("sft", entry.train))
    else:
        configs["grpo"] = opts.resolve("grpo", entry.train, entry.grpo)
        if configs["grpo"].init_from is not None:
            raise ValueError(f"train names a start model (model-{configs['grpo'].init_from}); use `from: LABEL`")
        if entry.latent is not None:
            configs["latent"] = opts.resolve("latent", entry.latent)
    return configs


def _mode(entry: LatentEntry, configs: Mapping[str, Any]) -> str:
    if entry.kind == "grpo":
        return "latent"
    sft = configs["sft"]
    return "latent" if sft.is_latent else "no-cot" if sft.no_cot else "cot"


def _series_k(entry: LatentEntry, configs: Mapping[str, Any]) -> int | None:
    """A series entry's latent count; only a flat schedule (latent_flat_<k>) has one k for every problem."""
    if entry.series is None:
        return None
    sft = configs.get("sft")
    if sft is None or not sft.is_latent or sft.latent_factor != 0:
        raise ValueError(f"series {entry.series!r} needs an SFT entry with a latent_flat_<k> schedule")
    return sft.latent_max


def resolve_point(entry: LatentEntry, parents: Mapping[str, LatentPoint], context: Mapping[str, Any]) -> LatentPoint:
    """Resolve one entry whose parent (if any) is already resolved; raises ValueError."""
    configs = _resolve_configs(entry)
    evals = {name: opts.changed_fields(opts.resolve("eval", text)) for name, text in entry.evals.items()}
    parent = None
    if entry.parent is not None:
        if entry.parent not in parents:
            raise ValueError(f"from {entry.parent!r} names no entry above this one; above: {sorted(parents)}")
        parent = parents[entry.parent]
    payload = {"kind": entry.kind, "configs": {name: opts.changed_fields(c) for name, c in configs.items()},
               "evals": evals, "parent": parent.config_hash if parent else None, **context}
    return LatentPoint(entry=entry, configs=configs, config_hash=digest(payload)[:12], mode=_mode(entry, configs),
                       k=_series_k(entry, configs), depth=parent.depth + 1 if parent else 0)


def resolve_points(entries: list[LatentEntry], context: Mapping[str, Any], errors: list[str]) -> list[LatentPoint]:
    """Every entry in order (a `from` names an entry above); each bad one is one line in `errors`."""
    points: dict[str, LatentPoint] = {}
    hashes: dict[tuple[str, str], str] = {}
    for index, entry in enumerate(entries):
        try:
            point = resolve_point(entry, points, context)
        except ValueError as err:
            errors.append(f"runs[{index}] ({entry.label}): {str(err).splitlines()[0]}")
            continue
        if entry.label in points:
            errors.append(f"runs[{index}] ({entry.label}): the label is used above; labels must be unique")
            continue
        same = hashes.setdefault((entry.kind, point.config_hash), entry.label)
        if same != entry.label:
            errors.append(f"runs[{index}] ({entry.label}): the same run as {same!r} (config hash {point.config_hash})")
        points[entry.label] = point
    return list(points.values())


def _block_range_errors(points: list[LatentPoint], layers: int) -> list[str]:
    """KD block ranges past the tiny model's depth, which training would meet only at its first step."""
    errors = []
    for point in points:
        blocks = getattr(point.configs.get("sft"), "block_range", None)
        if blocks is not None and blocks[1] >= layers:
            errors.append(f"{point.entry.label}: intermediate block range {blocks} needs at least {blocks[1] + 1} "
                          f"layers; model.tiny has {layers}")
    return errors


def parse_latent_spec(data: Any, base_dir: Path = Path(".")) -> LatentSweepSpec:
    """A YAML mapping -> LatentSweepSpec with every option string resolved; one SpecError lists all problems."""
    if not isinstance(data, Mapping):
        raise SpecError([f"a spec must be a YAML mapping, got {type(data).__name__}"])
    errors: list[str] = []
    _keys(data, TOP_KEYS, "spec", errors)
    for key in ("data", "runs"):
        if key not in data:
            errors.append(f"spec: missing required key {key!r}")
    dataset = _parse_data(data["data"], base_dir, errors) if "data" in data else None
    model, tiny = _parse_model(data.get("model"), dataset.task if dataset else None, errors)
    raw_entries = data.get("runs") or []
    if not isinstance(raw_entries, list):
        errors.append("runs: must be a list of run entries")
        raw_entries = []
    entries = [entry for i, raw in enumerate(raw_entries) if (entry := _parse_entry(raw, i, errors))]
    context = {"data": asdict(dataset) if dataset else None, "model": model, "tiny": asdict(tiny) if tiny else None}
    points = resolve_points(entries, context, errors)
    if tiny is not None:
        errors += _block_range_errors(points, tiny.layers)
    if errors:
        raise SpecError(errors)
    seeds = data.get("seeds", [0])
    try:
        return LatentSweepSpec(name=str(data.get("name", "latent-sweep")), data=dataset, model=model, tiny=tiny,
                               seeds=tuple(seeds) if isinstance(seeds, list) else (seeds,), points=tuple(points),
                               threads_per_run=data.get("threads_per_run"))
    except (TypeError, ValueError) as err:
        raise SpecError([f"spec: {str(err).splitlines()[0]}"]) from None


def load_latent_spec(path: str | Path, *, model: str | None = None, data_path: str | None = None) -> LatentSweepSpec:
    """Read, override (`--model`, `--dataset`: a data directory, relative to the current folder) and resolve."""
    path = Path(path)
    data = read_spec_file(path)
    if spec_kind(data) != "latent":
        raise SpecError([f"{path.name} is not a latent spec (kind: latent)"])
    if model is not None:
        data = {**data, "model": model}
    if data_path is not None:
        data = {**data, "data": {"path": str(Path(data_path).expanduser().resolve())}}
    return parse_latent_spec(data, path.parent)


__all__ = ["DataSpec", "LatentEntry", "LatentPoint", "LatentSweepSpec", "MAIN_EVAL", "TinyModelSpec",
           "load_latent_spec", "parse_latent_spec"]
