"""The run config: five typed, frozen sections saved as one JSON file, so a workdir alone can reproduce its run.

    model      ModelConfig (s2s_jax.config), vocab sizes and special ids filled in from the task
    data       the task and its settings (exactly `task.settings()`; `build_task` rebuilds it)
    optimizer  OptimizerConfig: optimizer, learning rate and schedule, clipping, label smoothing
    training   TrainConfig: steps, batch, evaluation, checkpoints, precision, accumulation, early stopping
    decoding   DecodeOptions (s2s_jax.run.translate): how `translate`/`evaluate` decode by default

Configs are built in layers: dataclass defaults < recipe (a named training preset,
e.g. the transformer's inverse-sqrt warmup) < command-line flags < `--set
section.key=value`. A bare `--set key=value` means `model.key`. Unknown sections
or keys are `ConfigError`s listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.run.translate import DecodeOptions
from s2s_jax.training.schedules import OPTIMIZERS, SCHEDULES

SECTIONS = ("model", "data", "optimizer", "training", "decoding")
PRECISIONS = ("fp32", "bf16")
BEST_METRICS = {"heldout_loss": "min", "exact_match": "max", "bleu": "max"}
# Keys that may differ when a run is resumed: they change neither the numbers nor the data order.
RESUMABLE = frozenset({"training.minutes", "training.log_every", "training.eval_chunk"})


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """name: adam | adamw | sgd (momentum, nesterov). schedule: constant | cosine (to 0 at training.steps) |
    inverse_sqrt (lr * sqrt(warmup / step) after the warmup, Vaswani et al.); all after `warmup_steps` of linear
    warmup. clip_norm: global gradient-norm clipping (0 disables it)."""

    name: str = "adam"
    lr: float = 3e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    nesterov: bool = False
    clip_norm: float = 1.0
    schedule: str = "cosine"
    warmup_steps: int = 0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise UserError(f"optimizer: name={self.name!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise UserError(f"optimizer: schedule={self.schedule!r} is not one of {SCHEDULES}")
        if not self.lr > 0 or self.clip_norm < 0 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise UserError("optimizer: lr must be > 0; clip_norm, warmup_steps and weight_decay >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"optimizer: label_smoothing={self.label_smoothing} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    eval_every: greedy exact match and teacher-forced loss on the held-out set every N steps (0: only at the end).
    checkpoint_every: also save every N steps between evaluations (0: save at evaluations and at the end).
    keep: the latest N checkpoints are kept, plus the best one by `best_metric` (heldout_loss, exact_match, bleu).
    patience: stop after this many evaluations without a better `best_metric` (0: never stop early).
    grad_accum: split each batch of `batch_size` rows into this many micro-batches (same gradient, less memory).
    precision: bf16 computes the model in bfloat16; parameters, optimizer state and the loss stay float32.
    shard_params: shard parameters and optimizer state over the devices (first axis) instead of replicating them.
    minutes: wall-clock budget: stop (evaluate, save) after the first step past it; 0 = none.
    """

    steps: int = 3000
    batch_size: int = 128
    seed: int = 0
    eval_every: int = 500
    log_every: int = 100
    eval_chunk: int = 500
    minutes: float = 0.0
    checkpoint_every: int = 0
    keep: int = 2
    best_metric: str = "heldout_loss"
    patience: int = 0
    grad_accum: int = 1
    precision: str = "fp32"
    shard_params: bool = False

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_chunk", "keep", "grad_accum"):
            if getattr(self, name) < 1:
                raise UserError(f"training: {name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every", "checkpoint_every", "patience", "minutes"):
            if getattr(self, name) < 0:
                raise UserError(f"training: {name}={getattr(self, name)} must be >= 0")
        if self.best_metric not in BEST_METRICS:
            raise UserError(f"training: best_metric={self.best_metric!r} is not one of {tuple(BEST_METRICS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"training: precision={self.precision!r} is not one of {PRECISIONS}")
        if self.batch_size % self.grad_accum:
            raise UserError(f"training: batch_size={self.batch_size} must be divisible by grad_accum="
                            f"{self.grad_accum}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A task and its settings, as `task.settings()` gives them ("name" plus the task's own keys)."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> DataConfig:
        rest = {k: _freeze(v) for k, v in settings.items() if k != "name"}
        return cls(name=str(settings.get("name", "")), settings=tuple(sorted(rest.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: _thaw(v) for k, v in self.settings}}


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list | tuple) else v


def _thaw(v: Any) -> Any:
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run is: `preset` names the model preset it started from (for the record)."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    training: TrainConfig = TrainConfig()
    decoding: DecodeOptions = DecodeOptions()
    preset: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "model": self.model.to_dict(), "data": self.data.to_dict(),
                "optimizer": self.optimizer.to_dict(), "training": self.training.to_dict(),
                "decoding": dataclasses.asdict(self.decoding)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """The inverse of `to_dict`; unknown keys are ConfigErrors (a file from another version says so)."""
        unknown = sorted(set(d) - set(SECTIONS) - {"preset"})
        if unknown:
            raise ConfigError(f"unknown run config section(s) {unknown}; valid: {', '.join(SECTIONS)}")
        missing = [s for s in SECTIONS if s not in d]
        if missing:
            raise ConfigError(f"run config lacks section(s) {missing}")
        return cls(
            model=ModelConfig.from_dict(dict(d["model"])),
            data=DataConfig.of(d["data"]),
            optimizer=_build(OptimizerConfig, "optimizer", d["optimizer"]),
            training=_build(TrainConfig, "training", d["training"]),
            decoding=_build(DecodeOptions, "decoding", d["decoding"]),
            preset=str(d.get("preset", "")),
        )

    def replace(self, section: str, **values: Any) -> RunConfig:
        """A copy with `values` set in `section` (checked: unknown keys list the valid ones)."""
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}; valid sections: {', '.join(SECTIONS)}")
        if not values:
            return self
        if section == "data":
            check_section_keys("data", values, [k for k, _ in self.data.settings])
            return dataclasses.replace(self, data=DataConfig.of({**self.data.to_dict(), **values}))
        current = getattr(self, section)
        check_section_keys(section, values, [f.name for f in dataclasses.fields(current)])
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})

    def diff(self, other: RunConfig) -> list[tuple[str, Any, Any]]:
        """[(section.key, mine, theirs)] for every differing value."""
        a, b = _flatten(self.to_dict()), _flatten(other.to_dict())
        return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _flatten(d: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for section, values in d.items():
        if isinstance(values, Mapping):
            out.update({f"{section}.{k}": v for k, v in values.items()})
        else:
            out[section] = values
    return out


def check_section_keys(section: str, values: Mapping[str, Any], valid: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {section} config key(s) {unknown}; valid {section} keys: {', '.join(valid)}")


def _build(cls: type, section: str, values: Mapping[str, Any]) -> Any:
    check_section_keys(section, values, [f.name for f in dataclasses.fields(cls)])
    return cls(**values)


# ---- recipes: named training presets ----------------------------------------------------------------------------
# A recipe sets optimizer/training/decoding values; a model preset of the same name picks its recipe by default
# (the "training intent" noted next to the preset in s2s_jax/presets.py).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    # Vaswani et al. / fairseq transformer: adam(0.9, 0.98), inverse-sqrt after 4000 warmup steps, smoothing 0.1.
    "transformer": {"optimizer": {"b2": 0.98, "schedule": "inverse_sqrt", "warmup_steps": 4000, "lr": 7e-4,
                                  "label_smoothing": 0.1}},
    # fairseq fconv (seed 001): nesterov SGD, lr 0.25, momentum 0.99, clip 0.1.
    "convs2s": {"optimizer": {"name": "sgd", "lr": 0.25, "momentum": 0.99, "nesterov": True, "clip_norm": 0.1,
                              "schedule": "constant"}},
    # A few seconds on a CPU: for checking that a setup runs end to end.
    "smoke": {"training": {"steps": 20, "batch_size": 16, "eval_every": 10, "log_every": 5, "eval_chunk": 100}},
}


def recipe_for(preset: str, recipe: str | None) -> dict[str, dict[str, Any]]:
    """The recipe named `recipe`, else the one named like the model preset, else the default."""
    if recipe is not None:
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}; available: {', '.join(sorted(RECIPES))}")
        return RECIPES[recipe]
    return RECIPES.get(preset, RECIPES["default"])


# ---- --set parsing ---------------------------------------------------------------------------------------------
def parse_value(key: str, text: str, like: Any, annotation: Any = None) -> Any:
    """Convert `text` to the type of `like` (the field's current value), or its annotation when that is None."""
    if like is None and annotation is not None:
        if text.lower() in ("none", "null"):
            return None
        like = _example_of(annotation)
    if isinstance(like, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--set {key}={text}: expected true or false")
    if isinstance(like, list | tuple):
        try:
            return [type(like[0])(x) if like else _number(x) for x in text.split(",")] if text else []
        except ValueError:
            raise ConfigError(f"--set {key}={text}: expected a comma-separated list") from None
    if like is None:
        return _number(text)
    try:
        return type(like)(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {type(like).__name__}") from None


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _example_of(annotation: Any) -> Any:
    """A value of the first non-None type in an `X | None` annotation (string annotations included)."""
    if isinstance(annotation, str):
        annotation = annotation.split("|")[0].strip()
        return {"int": 0, "float": 0.0, "bool": False, "str": ""}.get(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if isinstance(
        annotation, types.UnionType) else [annotation]
    return {int: 0, float: 0.0, bool: False, str: ""}.get(args[0] if args else None)


def split_overrides(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """["hid_dim=64", "optimizer.lr=1e-3"] -> {"model": {"hid_dim": "64"}, "optimizer": {"lr": "1e-3"}} (still text)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value or section.key=value")
        section, dot, name = key.rpartition(".")
        section = section if dot else "model"
        if section not in SECTIONS:
            raise ConfigError(f"--set {item!r}: unknown section {section!r}; valid sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[name] = text
    return out


def model_overrides(texts: Mapping[str, str]) -> dict[str, Any]:
    """Text model overrides ({"hid_dim": "64"}) typed like ModelConfig's defaults (unknown keys list the valid ones);
    the model section of `train --set` and the `parity` verb's `--set`."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    check_section_keys("model", texts, list(defaults))
    return {k: parse_value(k, v, defaults[k]) for k, v in texts.items()}


def typed_overrides(run: RunConfig, section: str, texts: Mapping[str, str]) -> dict[str, Any]:
    """Text values of `section` typed like the run's current values (unknown keys list the valid ones)."""
    if section == "data":
        current = dict(run.data.settings)
        check_section_keys("data", texts, list(current))
        return {k: parse_value(f"data.{k}", v, _thaw(current[k])) for k, v in texts.items()}
    obj = getattr(run, section)
    fields = {f.name: f for f in dataclasses.fields(obj)}
    check_section_keys(section, texts, list(fields))
    return {k: parse_value(f"{section}.{k}", v, getattr(obj, k), fields[k].type) for k, v in texts.items()}
