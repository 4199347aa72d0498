"""The train state: everything a step changes, as one pytree (so it can be donated and checkpointed)."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from s2s_jax.config import ModelConfig
from s2s_jax.layers.init import reinit


@flax.struct.dataclass
class TrainState:
    """step (int32 scalar), params, optimizer state, and the dropout RNG.

    `rng` holds raw key data (`jax.random.key_data`), a plain uint32 array, so a
    checkpoint stores it like any other array; steps wrap it back into a key.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array


def init_params(model: nn.Module, cfg: ModelConfig, key: jax.Array, batch: dict[str, Any]) -> Any:
    """Fresh parameters for `model`, re-drawn per `cfg.param_init` as the origin's code does after construction."""
    init_key, reinit_key = jax.random.split(key)
    variables = model.init({"params": init_key}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    return reinit(variables["params"], cfg.param_init, reinit_key)


def create_train_state(
    model: nn.Module, cfg: ModelConfig, tx: optax.GradientTransformation, seed: int, batch: dict[str, Any]
) -> TrainState:
    """Initial state from `seed`; `batch` only fixes the input shapes for `model.init`."""
    params_key, dropout_key = jax.random.split(jax.random.key(seed))
    params = init_params(model, cfg, params_key, batch)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=tx.init(params),
        rng=jax.random.key_data(dropout_key),
    )
