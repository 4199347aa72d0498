"""PyTorch-compatible initializers, so a fresh Flax model trains like its torch origin."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def uniform(bound: float):
    """U(-bound, bound), PyTorch's default for RNN weights and Linear layers."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def linear_kernel(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """nn.Linear's weight init for a Flax kernel [in, out]: U(-1/sqrt(in), 1/sqrt(in))."""
    return uniform(1.0 / math.sqrt(shape[0]))(key, shape, dtype)


def reinit(params, spec: str, key: jax.Array):
    """Re-draw every parameter as the origin's training code does after construction.

    spec: "torch" (keep the module defaults), "uniform:A" (bentrevett tutorial 1,
    every parameter U(-A, A)) or "normal:S" (tutorial 2, every parameter N(0, S^2)).
    """
    if spec == "torch":
        return params
    kind, _, value = spec.partition(":")
    scale = float(value)
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    if kind == "uniform":
        new = [jax.random.uniform(k, x.shape, x.dtype, -scale, scale) for k, x in zip(keys, leaves, strict=True)]
    elif kind == "normal":
        new = [scale * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves, strict=True)]
    else:
        raise ValueError(f"param_init={spec!r}: expected 'torch', 'uniform:A' or 'normal:S'")
    return jax.tree.unflatten(treedef, new)
