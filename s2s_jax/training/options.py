"""The training sections of a run config: the optimizer and the loop's settings, as frozen dataclasses.

They belong to training (the loop and the optimizer read them); `s2s_jax.run.config`
composes them with the model, data and decoding sections into the RunConfig saved
in a workdir. Every bad value is a `ConfigError` naming the section and field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from s2s_jax.errors import ConfigError
from s2s_jax.training.schedules import OPTIMIZERS, SCHEDULES

PRECISIONS = ("fp32", "bf16")
BEST_METRICS = {"heldout_loss": "min", "exact_match": "max", "bleu": "max"}
INT_LIMIT = 2**31 - 1  # counts and seeds enter jitted code as int32


def check_ints_fit(section: str, obj: Any) -> None:
    """Every int field of a config section fits in int32: a step count or seed past it would overflow inside
    jitted code, far from the flag that caused it."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            raise ConfigError(f"{section}: {f.name}={value} is too large (at most {INT_LIMIT})")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """name: adam | adamw | sgd (momentum, nesterov). schedule: constant | cosine (to 0 at training.steps) |
    inverse_sqrt (lr * sqrt(warmup / step) after the warmup, Vaswani et al.); all after `warmup_steps` of linear
    warmup. clip_norm: global gradient-norm clipping (0 disables it). ema_decay: keep an exponential moving
    average of the params in the optimizer state (e.g. 0.999; 0: none), read with `--checkpoint ema`."""

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
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        check_ints_fit("optimizer", self)
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"optimizer: name={self.name!r} is not one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optimizer: schedule={self.schedule!r} is not one of {SCHEDULES}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"optimizer: lr={self.lr} must be a finite number > 0")
        for name in ("b1", "b2", "eps", "weight_decay", "momentum", "clip_norm"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"optimizer: {name}={getattr(self, name)} must be a finite number >= 0")
        if self.warmup_steps < 0:
            raise ConfigError(f"optimizer: warmup_steps={self.warmup_steps} must be >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"optimizer: label_smoothing={self.label_smoothing} must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optimizer: ema_decay={self.ema_decay} must be in [0, 1) (0: no EMA)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings.

    eval_every: exact match (decoded as the run's decoding section says) and teacher-forced loss on the held-out
        set every N steps (0: only at the end).
    checkpoint_every: also save every N steps between evaluations (0: save at evaluations and at the end).
    keep: the latest N checkpoints are kept, plus the best one by `best_metric` (heldout_loss, exact_match, bleu).
    patience: stop after this many evaluations without a better `best_metric` (0: never stop early).
    grad_accum: split each batch of `batch_size` rows into this many micro-batches (same gradient, less memory).
    precision: bf16 computes the model in bfloat16; parameters, optimizer state and the loss stay float32.
    shard_params: shard parameters and optimizer state over the devices (first axis) instead of replicating them.
    minutes: wall-clock budget of the whole run (set-up, steps, evaluations, the final evaluation and save); 0 = none.
    max_tokens: batches of about this many padded tokens (fairseq's --max-tokens) instead of `batch_size` rows:
        `max_tokens // width` rows per bucket width, a multiple of devices x grad_accum (text tasks).
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
    max_tokens: int = 0

    def __post_init__(self) -> None:
        check_ints_fit("training", self)
        for name in ("steps", "batch_size", "log_every", "eval_chunk", "keep", "grad_accum"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training: {name}={getattr(self, name)} must be >= 1")
        for name in ("eval_every", "checkpoint_every", "patience", "max_tokens"):
            if getattr(self, name) < 0:
                raise ConfigError(f"training: {name}={getattr(self, name)} must be >= 0")
        if not (math.isfinite(self.minutes) and self.minutes >= 0):
            raise ConfigError(f"training: minutes={self.minutes} must be a finite number >= 0 (0: no budget)")
        if self.best_metric not in BEST_METRICS:
            raise ConfigError(f"training: best_metric={self.best_metric!r} is not one of {tuple(BEST_METRICS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"training: precision={self.precision!r} is not one of {PRECISIONS}")
        if self.batch_size % self.grad_accum:
            raise ConfigError(f"training: batch_size={self.batch_size} must be divisible by grad_accum="
                            f"{self.grad_accum}")

    def batching(self, devices: int = 1) -> Any:
        """What the task's batcher takes: `batch_size` rows, or with `max_tokens` a `TokenBatches` whose row counts
        split over `devices` and `grad_accum` micro-batches."""
        if not self.max_tokens:
            return self.batch_size
        from s2s_jax.data.batching import TokenBatches

        return TokenBatches(self.max_tokens, devices * self.grad_accum)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
