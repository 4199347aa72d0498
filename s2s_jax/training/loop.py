"""The training loop: jitted steps, plain progress lines, greedy exact match on held-out data, checkpoint.

Kept deliberately small (nanoGPT style): one Python loop over steps; batches are a
function of (task seed, step); everything heavy is inside the jitted step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax import presets
from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.decoding.greedy import make_greedy_decoder
from s2s_jax.errors import UserError
from s2s_jax.models import build_model
from s2s_jax.training.metrics import decode_in_chunks, exact_match, sum_in_chunks
from s2s_jax.training.state import TrainState, create_train_state
from s2s_jax.training.steps import SCHEDULES, make_eval_step, make_optimizer, make_train_step

TASK_KEYS = ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (saved in config.json next to the model config).

    eval_every: greedy exact match on the held-out set every this many steps (0: only at the end).
    clip_norm: global gradient-norm clipping threshold (0 disables it).
    schedule: learning rate "constant" or "cosine" (decays to 0 at `steps`), after `warmup_steps` linear warmup.
    """

    steps: int = 3000
    batch_size: int = 128
    lr: float = 3e-3
    seed: int = 0
    eval_every: int = 500
    log_every: int = 100
    clip_norm: float = 1.0
    label_smoothing: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    eval_chunk: int = 500

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "log_every", "eval_chunk"):
            if getattr(self, name) < 1:
                raise UserError(f"training: {name}={getattr(self, name)} must be >= 1")
        if self.eval_every < 0 or self.clip_norm < 0 or self.warmup_steps < 0 or not self.lr > 0:
            raise UserError("training: eval_every, clip_norm and warmup_steps must be >= 0 and lr > 0")
        if self.schedule not in SCHEDULES:
            raise UserError(f"training: schedule={self.schedule!r} is not one of {SCHEDULES}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(f"training: label_smoothing={self.label_smoothing} must be in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    exact_match: float
    history: list[dict[str, float]]
    seconds: float


def config_for_task(preset: str, task: Any, overrides: dict[str, Any] | None = None) -> ModelConfig:
    """The preset's config with `overrides`, and vocab sizes and special ids taken from the task's vocabs."""
    overrides = dict(overrides or {})
    clash = sorted(set(overrides) & set(TASK_KEYS))
    if clash:
        raise ConfigError(f"{clash} come from the task's vocabulary and cannot be overridden")
    src, tgt = task.src_vocab, task.tgt_vocab
    data = dict(
        src_vocab_size=len(src), tgt_vocab_size=len(tgt), pad_id=tgt.pad_id, bos_id=tgt.bos_id, eos_id=tgt.eos_id
    )
    return presets.get(preset, **overrides, **data)


def evaluate(
    decoder: Callable, params: Any, batch: dict[str, np.ndarray], chunk: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """(exact-match fraction, per-row hits [B], greedy tokens [B, T]) of greedy decoding on `batch`."""
    tokens, lengths = decode_in_chunks(decoder, params, batch["src"], batch["src_lengths"], chunk)
    hits = exact_match(tokens, lengths, batch["tgt_out"], batch["tgt_lengths"])
    return float(hits.mean()), hits, tokens


def train(
    cfg: ModelConfig,
    task: Any,
    tc: TrainConfig,
    workdir: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train `cfg` on `task` for `tc.steps` steps; if `workdir` is given (and new), save the run there."""
    if workdir is not None:
        from s2s_jax import workdir as wd  # orbax is imported only when a run is saved

        workdir = wd.prepare(workdir)
    model = build_model(cfg)
    tx = make_optimizer(tc.lr, tc.clip_norm, tc.schedule, tc.steps, tc.warmup_steps)
    state = create_train_state(model, cfg, tx, tc.seed, task.train_batch(0, tc.batch_size))
    train_step = make_train_step(model, tx, tc.label_smoothing)
    eval_step = make_eval_step(model, tc.label_smoothing)
    decoder = make_greedy_decoder(model, task.max_decode_len)
    heldout = task.heldout_batch()
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    log(f"model {cfg.family}/{cfg.cell} emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers}: "
        f"{n_params:,} parameters; task {task.settings()}; {tc.steps} steps of batch {tc.batch_size}")

    history: list[dict[str, float]] = []
    start = time.perf_counter()
    tick, tick_step = start, 0
    losses: list[jax.Array] = []
    em = 0.0
    for step in range(1, tc.steps + 1):
        state, metrics = train_step(state, task.train_batch(step, tc.batch_size))
        losses.append(metrics["loss"])
        if step % tc.log_every == 0 or step == tc.steps:
            loss = float(jnp.mean(jnp.stack(losses)))
            losses = []
            if not math.isfinite(loss):
                raise UserError(f"loss became {loss} by step {step}; lower --lr or check the data")
            now = time.perf_counter()
            rate = (step - tick_step) / (now - tick)
            tick, tick_step = now, step
            log(f"step {step:>6}/{tc.steps}  loss {loss:.4f}  {rate:.1f} steps/s")
        if (tc.eval_every and step % tc.eval_every == 0) or step == tc.steps:
            em, _, _ = evaluate(decoder, state.params, heldout, tc.eval_chunk)
            ev = sum_in_chunks(eval_step, state.params, heldout, tc.eval_chunk)
            heldout_loss = ev["loss_sum"] / max(ev["tokens"], 1.0)
            history.append({"step": step, "exact_match": em, "heldout_loss": heldout_loss})
            if workdir is not None:
                with open(workdir / wd.METRICS_FILE, "a", encoding="utf-8") as f:
                    f.write(json.dumps(history[-1]) + "\n")
            log(f"eval step {step}: held-out exact match {em:.2%} of {len(heldout['src'])}, "
                f"teacher-forced loss {heldout_loss:.4f}  ({time.perf_counter() - start:.0f}s)")
            tick = time.perf_counter()  # keep evaluation time out of the steps/s figure
    seconds = time.perf_counter() - start
    if workdir is not None:
        wd.save_run(workdir, cfg, tc.to_dict(), task, state)
        log(f"saved to {workdir}")
    return TrainResult(state=state, exact_match=em, history=history, seconds=seconds)
