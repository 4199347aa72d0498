"""Position information for the non-recurrent families: learned tables and sinusoids.

Convolutions and self-attention are blind to order, so ConvS2S and the
Transformer add a position vector to each token embedding. A learned table has
`max_len` rows and cannot represent later positions; since array shapes are
static under jit, a too-long input is caught at trace time with a clear error
instead of silently gathering out of range.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from s2s_jax.errors import UserError


def check_length(length: int, limit: int, what: str) -> None:
    """Raise UserError if a sequence of `length` positions exceeds a learned table of `limit` rows."""
    if length > limit:
        raise UserError(
            f"{what} length {length} exceeds the model's positional limit max_len={limit} "
            f"(learned position embeddings have max_len rows); shorten or split the input, "
            f"or use a model with a larger max_len"
        )


def sinusoidal(positions: jax.Array, dim: int) -> jax.Array:
    """Vaswani et al.'s encoding for integer `positions` [...] -> [..., dim].

    Channel 2i is sin(p / 10000^(2i/dim)) and 2i+1 is cos of the same angle
    (interleaved, as in the paper). Computed from the positions themselves, so
    a decoding step at position p gets exactly row p of the full table.
    """
    half = (dim + 1) // 2
    freqs = jnp.exp(jnp.arange(half, dtype=jnp.float32) * (-2.0 * math.log(10000.0) / dim))
    angles = positions.astype(jnp.float32)[..., None] * freqs
    table = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], 2 * half)
    return table[..., :dim]
