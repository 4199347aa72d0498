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
import numpy as np

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


def marian_table(n_positions: int, dim: int) -> np.ndarray:
    """Hugging Face Marian's sinusoid table [n_positions, dim] float32, computed as
    `MarianSinusoidalPositionalEmbedding.create_weight` does: in float64, sines of the even-indexed angles in the
    first half (ceil(dim / 2) columns), cosines of the odd-indexed ones in the rest, then cast. Built in numpy so
    Flax and the torch mirror hold the same bits as Hugging Face's table (a float32 recomputation differs by up to
    1e-4 at position 500)."""
    j = np.arange(dim)
    angles = np.arange(n_positions, dtype=np.float64)[:, None] / np.power(10000, 2 * (j // 2) / dim)[None, :]
    out = np.empty((n_positions, dim), np.float32)
    half = dim // 2 + dim % 2
    out[:, :half] = np.sin(angles[:, 0::2])
    out[:, half:] = np.cos(angles[:, 1::2])
    return out


def fairseq_table(n_positions: int, dim: int, pad_id: int) -> np.ndarray:
    """fairseq's `SinusoidalPositionalEmbedding.get_embedding` rows for positions pad_id + 1 ... pad_id + n_positions
    (fairseq numbers the tokens of a sequence from padding_idx + 1), [n_positions, dim] float32: sines then cosines
    of p * 10000^(-i / (dim/2 - 1)), in float32 as fairseq computes them, a zero column appended for odd dim."""
    half = dim // 2
    step = math.log(10000) / (half - 1)
    # torch's float32 exp, sin and cos are within an ulp of correctly rounded; float64 ones rounded to float32
    # come closer to them than numpy's float32 versions (a 1-ulp frequency error grows with the position)
    freqs = np.exp((np.arange(half, dtype=np.float32) * np.float32(-step)).astype(np.float64)).astype(np.float32)
    positions = np.arange(pad_id + 1, pad_id + 1 + n_positions, dtype=np.float32)[:, None]
    angles = (positions * freqs[None, :]).astype(np.float64)
    table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)
    if dim % 2:
        table = np.concatenate([table, np.zeros((n_positions, 1), np.float32)], axis=1)
    return table.astype(np.float32)
