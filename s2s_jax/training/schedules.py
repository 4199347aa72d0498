"""Learning-rate schedules and the optax optimizer of a run.

Every schedule starts with `warmup_steps` of linear warmup:
- constant: `lr` after the warmup (optax's linear warmup from 0: the first update has lr 0),
- cosine: cosine decay from `lr` to 0 at `steps` (optax's warmup_cosine_decay_schedule, same warmup),
- inverse_sqrt: `lr * min(n / warmup, sqrt(warmup / n))` at update n = 1, 2, ... (Vaswani et al.;
  fairseq's `inverse_sqrt`): linear up to `lr` at n = warmup, then decaying as 1/sqrt(n); without a
  warmup, `lr / sqrt(n)`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "cosine", "inverse_sqrt")
OPTIMIZERS = ("adam", "adamw", "sgd")


def make_schedule(name: str, lr: float, steps: int = 1, warmup_steps: int = 0) -> optax.Schedule:
    """The learning rate as a function of the update count (0-based)."""
    if name not in SCHEDULES:
        raise ValueError(f"schedule={name!r} is not one of {SCHEDULES}")
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, max(steps, warmup_steps + 1), 0.0)
    if name == "inverse_sqrt":
        w = max(warmup_steps, 1)

        def inverse_sqrt(count: Any) -> Any:
            n = jnp.asarray(count, jnp.float32) + 1.0  # the update's number, from 1
            warm = n / w if warmup_steps else 1.0
            return lr * jnp.minimum(warm, jnp.sqrt(w / n))

        return inverse_sqrt
    if warmup_steps > 0:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup_steps), optax.constant_schedule(lr)], [warmup_steps]
        )
    return optax.constant_schedule(lr)


def make_optimizer_from(opt: Any, steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(gradient transformation, schedule) for an `OptimizerConfig`: clipping, then adam / adamw / sgd."""
    schedule = make_schedule(opt.schedule, opt.lr, steps, opt.warmup_steps)
    if opt.name == "adam":
        core = optax.adam(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps)
    elif opt.name == "adamw":
        core = optax.adamw(schedule, b1=opt.b1, b2=opt.b2, eps=opt.eps, weight_decay=opt.weight_decay)
    elif opt.name == "sgd":
        core = optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov)
    else:
        raise ValueError(f"optimizer {opt.name!r} is not one of {OPTIMIZERS}")
    parts = [optax.clip_by_global_norm(opt.clip_norm)] if opt.clip_norm and opt.clip_norm > 0 else []
    ema = [params_ema(opt.ema_decay)] if opt.ema_decay else []
    return optax.chain(*parts, core, *ema), schedule


class ParamsEmaState(NamedTuple):
    """The exponential moving average of the parameters after each update (fp32, like the params)."""

    ema: Any


def params_ema(decay: float) -> optax.GradientTransformation:
    """Keep `ema = decay * ema + (1 - decay) * params` after every update, starting from the initial params; the
    updates pass through unchanged. It lives in the optimizer state, so it is checkpointed, sharded and resumed
    exactly with the run, and `--checkpoint ema` reads it back (`ema_params`). Last in the chain: it sees the
    final updates, so params + updates are the new params."""

    def init(params: Any) -> ParamsEmaState:
        return ParamsEmaState(ema=jax.tree.map(lambda p: jnp.array(p, copy=True), params))

    def update(updates: Any, state: ParamsEmaState, params: Any = None) -> tuple[Any, ParamsEmaState]:
        if params is None:
            raise ValueError("params_ema needs the params: call tx.update(grads, state, params)")
        new = jax.tree.map(lambda e, p, u: decay * e + (1.0 - decay) * (p + u).astype(e.dtype), state.ema, params,
                           updates)
        return updates, ParamsEmaState(ema=new)

    return optax.GradientTransformation(init, update)


def ema_params(opt_state: Any) -> Any:
    """The EMA params inside an optimizer state built with `ema_decay` (the chain's last state)."""
    for part in reversed(opt_state if isinstance(opt_state, tuple) else (opt_state,)):
        if isinstance(part, ParamsEmaState):
            return part.ema
    raise ValueError("this optimizer state keeps no EMA of the params (trained without ema_decay)")
