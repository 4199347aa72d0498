"""Dropout with masks from a cheap counter hash instead of threefry, for every family.

Why not `flax.linen.Dropout`: it draws each mask element with
`jax.random.bernoulli`, a float uniform from threefry2x32, and with JAX's default
partitionable threefry that is a full 20-round block per element. On CPU that
costs about 8 ns per element: 29 ms for the 3.5 M elements one half-width
Transformer train step drops (a quarter of the step, three times what torch's
dropout costs it; see bench/train_throughput.py and the README).

Here one threefry call per mask draws two 32-bit words from the flax `dropout`
rng, a multiplier `a` (forced odd) and an offset `b`, and element i's bits are
`lowbias32(i * a + b)`: an affine map and an integer hash that are both
bijections of uint32 (the hash is Wellons' lowbias32 from hash-prospector), so the
elements of one mask get distinct bits, and each call gets its own sequence.
About six integer operations per element, 20x faster than threefry. An element
is kept when its bits are >= rate * 2^32, so it is kept with probability
1 - rate (to 2^-32), and kept values are scaled by 1 / (1 - rate), as torch and
flax do. The masks are a pure function of the rng key, so training stays
reproducible and resumable.

That trade is XLA CPU's. On a GPU threefry is a few cheap integer kernels run in parallel, and the hash is
no faster, so the mask's bits come from `dropout_bits`: the hash under the "cpu" kernels, `jax.random.bits`
(threefry, the key's own stream) under the "gpu" ones (`s2s_jax.backend`). Both give uniform uint32 bits that
are a pure function of the key, compared with the same threshold, so the rate, the scaling and the
reproducibility are the same; the masks differ between the two.

Same interface as `nn.Dropout`: `Dropout(rate)(x, deterministic=...)`; the rng
collection is "dropout".
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from s2s_jax.backend import kernels

_M1, _M2 = 0x7FEB352D, 0x846CA68B  # lowbias32's multipliers


def hash_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """uint32 bits of `shape` from `key`: lowbias32(i * a + b) over the flat index i, (a, b) drawn from key."""
    size = math.prod(shape)
    if size >= 2**32:
        raise ValueError(f"dropout mask of {size} elements is larger than the 2^32 a uint32 counter can index")
    a, b = jax.random.bits(key, (2,), jnp.uint32)
    h = lax.iota(jnp.uint32, size).reshape(shape) * (a | jnp.uint32(1)) + b
    h = (h ^ (h >> 16)) * jnp.uint32(_M1)
    h = (h ^ (h >> 15)) * jnp.uint32(_M2)
    return h ^ (h >> 16)


def dropout_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Uniform uint32 bits of `shape` from `key`: `hash_bits` under the "cpu" kernels, `jax.random.bits` under
    the "gpu" ones (see the module docstring)."""
    return hash_bits(key, shape) if kernels() == "cpu" else jax.random.bits(key, shape, jnp.uint32)


def keep_threshold(rate: float) -> int:
    """The uint32 bound below which an element is dropped: round(rate * 2^32), kept inside uint32."""
    return min(round(rate * 2**32), 2**32 - 1)


def dropout(key: jax.Array, rate: float, x: jax.Array) -> jax.Array:
    """x with each element zeroed with probability `rate` and the rest scaled by 1 / (1 - rate)."""
    if rate == 0.0:
        return x
    if rate >= 1.0:
        return jnp.zeros_like(x)
    keep = dropout_bits(key, x.shape) >= jnp.uint32(keep_threshold(rate))
    return lax.select(keep, x / (1.0 - rate), jnp.zeros_like(x))


class Dropout(nn.Module):
    """`nn.Dropout`'s interface over `dropout` above (rng collection "dropout")."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, *, deterministic: bool) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        return dropout(self.make_rng("dropout"), self.rate, x)
