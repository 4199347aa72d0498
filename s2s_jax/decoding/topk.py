"""Exact top-k over wide rows (beam x vocabulary candidates) in two passes, for beam search (and greedy's argmax).

XLA's CPU top-k custom call walks every element of a [B, beam * vocab] row
through its selection; at batch 64, beam 5 and a 6k vocabulary that was 3 ms
of a 23 ms Transformer beam step (torch.topk: 1 ms). `top_k` takes the row in
chunks instead: one fast max-reduction gives each chunk's maximum, the k best
chunks are gathered (with the ragged tail, if any), and only those k * chunk
values go through the top-k. Exactly `jax.lax.top_k`'s answer, ties included
(value descending, then lower index first):

  an element e of the true top k lies in a chunk c. If c is not among the k
  chunks picked by (maximum descending, chunk index ascending), k other chunks
  outrank it, and each one's maximum outranks e (greater, or equal and at a
  lower index, since the chunk is wholly before c), so e would not be in the top
  k. The picked chunks are gathered in index order, the tail last, so ties in
  the final top-k still fall to the lower flat index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from s2s_jax.backend import kernels

MIN_CHUNK, MAX_CHUNK, DEFAULT_CHUNK = 96, 384, 128


def chunk_size(n: int) -> int:
    """A chunk for rows of n values: a divisor of n in [MIN_CHUNK, MAX_CHUNK] when there is one (no ragged tail,
    whose slice costs an extra pass on XLA CPU), else DEFAULT_CHUNK; the one nearest 192, which measured best."""
    divisors = [c for c in range(MIN_CHUNK, MAX_CHUNK + 1) if n % c == 0]
    return min(divisors, key=lambda c: abs(c - 192)) if divisors else DEFAULT_CHUNK


def top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """(values, indices) of the k largest along the last axis of x [B, N]: `jax.lax.top_k(x, k)`, exactly; the
    two passes under the "cpu" kernels, one `lax.top_k` under the "gpu" ones (see the module docstring)."""
    return two_pass_top_k(x, k) if kernels() == "cpu" else jax.lax.top_k(x, k)


def argmax(x: jax.Array) -> jax.Array:
    """Index of the largest value along the last axis of x [B, N], ties to the lower index (`jnp.argmax`'s answer
    on rows without NaN), int32. Under the "cpu" kernels the top-1 of `two_pass_top_k`: XLA CPU's variadic (value,
    index) reduce, which `jnp.argmax` becomes, took 1.1 ms of a 5.5 ms greedy step at [64, 5921] (a tenth of the
    step time); the two passes take 0.13 ms."""
    if kernels() != "cpu":
        return jnp.argmax(x, axis=-1).astype(jnp.int32)
    return two_pass_top_k(x, 1)[1][..., 0].astype(jnp.int32)


def two_pass_top_k(x: jax.Array, k: int) -> tuple[jax.Array, jax.Array]:
    """`jax.lax.top_k(x, k)` for x [B, N] through chunk maxima (the module docstring's proof)."""
    b, n = x.shape
    chunk = chunk_size(n)
    full = n // chunk
    if full <= 2 * k:  # too few chunks to leave any out
        return jax.lax.top_k(x, k)
    body = x if full * chunk == n else x[:, : full * chunk]
    _, picked = jax.lax.top_k(body.reshape(b, full, chunk).max(axis=-1), k)
    idx = (jnp.sort(picked, axis=-1)[:, :, None] * chunk + jnp.arange(chunk)).reshape(b, k * chunk)
    if full * chunk < n:
        tail = jnp.broadcast_to(jnp.arange(full * chunk, n, dtype=idx.dtype), (b, n - full * chunk))
        idx = jnp.concatenate([idx, tail], axis=1)
    values, pos = jax.lax.top_k(jnp.take_along_axis(x, idx, axis=1), k)
    return values, jnp.take_along_axis(idx, pos, axis=1)
