"""Pure, jitted train and eval steps (teacher forcing) and the masked loss they share.

Batches are dicts of int32 arrays `src`, `src_lengths`, `tgt_in`, `tgt_out`,
`tgt_lengths` (see `s2s_jax.data.tasks`). The loss mask is built from
`tgt_lengths`, not from pad_id: in some tasks (seed 002 addition) the pad symbol
is a real, predicted token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from s2s_jax.training.state import TrainState

Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


SCHEDULES = ("constant", "cosine")


def make_optimizer(
    lr: float, clip_norm: float | None = 1.0, schedule: str = "constant", steps: int = 1, warmup_steps: int = 0
) -> optax.GradientTransformation:
    """Adam after global-norm gradient clipping (clip_norm None or <= 0 disables clipping).

    schedule: "constant", or "cosine" decay to 0 over `steps`; either after a linear warmup of `warmup_steps`.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule={schedule!r} is not one of {SCHEDULES}")
    if schedule == "cosine":
        rate = optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, max(steps, warmup_steps + 1), 0.0)
    elif warmup_steps > 0:
        rate = optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)], [warmup_steps]
        )
    else:
        rate = lr
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm and clip_norm > 0 else []
    return optax.chain(*parts, optax.adam(rate))


def target_mask(batch: Batch) -> jax.Array:
    """[B, T] float mask, 1 where t < tgt_lengths[b]."""
    t = batch["tgt_out"].shape[1]
    return (jnp.arange(t)[None, :] < batch["tgt_lengths"][:, None]).astype(jnp.float32)


def masked_cross_entropy(
    logits: jax.Array, targets: jax.Array, mask: jax.Array, label_smoothing: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """(sum of per-token losses under `mask`, number of tokens); smoothing spreads mass uniformly over the vocab."""
    v = logits.shape[-1]
    labels = jax.nn.one_hot(targets, v, dtype=logits.dtype)
    if label_smoothing > 0.0:
        labels = optax.smooth_labels(labels, label_smoothing)
    losses = optax.softmax_cross_entropy(logits, labels)
    return jnp.sum(losses * mask), jnp.sum(mask)


def _logits(model: nn.Module, params: Any, batch: Batch, train: bool, rngs: dict[str, jax.Array] | None) -> jax.Array:
    out = model.apply(
        {"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"], train=train, rngs=rngs
    )
    return out[0] if isinstance(out, tuple) else out  # attention models may also return weights


def _counts(logits: jax.Array, batch: Batch, mask: jax.Array) -> jax.Array:
    return jnp.sum((jnp.argmax(logits, -1) == batch["tgt_out"]) * mask)


def make_train_step(
    model: nn.Module, tx: optax.GradientTransformation, label_smoothing: float = 0.0
) -> Callable[[TrainState, Batch], tuple[TrainState, Metrics]]:
    """`step(state, batch) -> (state, metrics)`, jitted with the state donated.

    metrics: loss (mean per target token), tokens, correct (teacher-forced argmax hits), grad_norm.
    Each step splits the state's key: one half for this step's dropout, one carried on.
    """

    def loss_fn(params, batch, key):
        logits = _logits(model, params, batch, True, {"dropout": key})
        mask = target_mask(batch)
        total, n = masked_cross_entropy(logits, batch["tgt_out"], mask, label_smoothing)
        return total / jnp.maximum(n, 1.0), (n, _counts(logits, batch, mask))

    def step(state: TrainState, batch: Batch) -> tuple[TrainState, Metrics]:
        key, dropout_key = jax.random.split(jax.random.wrap_key_data(state.rng))
        (loss, (n, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, dropout_key)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = state.replace(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
            rng=jax.random.key_data(key),
        )
        return new, {"loss": loss, "tokens": n, "correct": correct, "grad_norm": optax.tree.norm(grads)}

    return jax.jit(step, donate_argnums=0)


def make_eval_step(model: nn.Module, label_smoothing: float = 0.0) -> Callable[[Any, Batch], Metrics]:
    """`eval(params, batch) -> {loss_sum, tokens, correct}` with teacher forcing and no dropout (sums, so
    chunks can be added up)."""

    def step(params: Any, batch: Batch) -> Metrics:
        logits = _logits(model, params, batch, False, None)
        mask = target_mask(batch)
        total, n = masked_cross_entropy(logits, batch["tgt_out"], mask, label_smoothing)
        return {"loss_sum": total, "tokens": n, "correct": _counts(logits, batch, mask)}

    return jax.jit(step)
