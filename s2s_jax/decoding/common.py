"""What the search algorithms share: the result type, the score's length penalty, log-softmax, beam rows.

Kept apart from `search.py` so that the algorithm modules (`beam.py`, `sampling.py`) and the
public entry (`search.py`) can all import it without importing each other; `search.py`
re-exports the names other packages use.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from s2s_jax.backend import kernels

NEG_INF = -1.0e9


class SearchResult(NamedTuple):
    """n-best output per sentence, best first: tokens [B, K, L] (pad after eos), lengths [B, K] (tokens up to and
    including eos, or L when a hypothesis never emitted one), scores [B, K]: the sum of the chosen tokens'
    log-probs (through eos) over the GNMT penalty ((5 + length) / 6) ** alpha. K is the beam (1 for greedy and
    sampling). token_scores [B, K, L]: each output token's log-prob under the model (0 after the end; in beam
    search, the candidate's running score minus its parent's, so to float32 rounding of the sums), what
    `--print-scores` prints."""

    tokens: jax.Array
    lengths: jax.Array
    scores: jax.Array
    token_scores: jax.Array


def log_softmax(logits: jax.Array) -> jax.Array:
    """log-softmax over the last axis: `unfused_log_softmax` under the "cpu" kernels (`s2s_jax.backend`),
    `jax.nn.log_softmax` under the "gpu" ones, where the fusion the unfused form avoids is what one wants."""
    return unfused_log_softmax(logits) if kernels() == "cpu" else jax.nn.log_softmax(logits, axis=-1)


def unfused_log_softmax(logits: jax.Array) -> jax.Array:
    """log-softmax over the last axis as `logits - (max + log(sum(exp(logits - max))))`.

    The same quantity as `jax.nn.log_softmax` (which rounds `(logits - max) - lse`), written so that XLA CPU does
    not fuse the row max and the subtraction into the vocabulary projection's matmul: that fusion made a
    [320, 512] x [512, 5921] projection plus log-softmax 7.5 ms instead of 5.9.
    """
    top = jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    return logits - (top + jnp.log(jnp.sum(jnp.exp(logits - top), axis=-1, keepdims=True)))


def length_penalty(length: jax.Array, alpha: float) -> jax.Array:
    """GNMT's ((5 + length) / 6) ** alpha; `length` counts generated tokens including eos."""
    return ((5.0 + length) / 6.0) ** alpha


def repeat_beams(tree: Any, beam: int) -> Any:
    """[B, ...] -> [B * beam, ...], each row repeated `beam` times (batch-first pytrees)."""
    return jax.tree.map(lambda x: jnp.repeat(x, beam, axis=0), tree)


def take_rows(state: Any, rows: jax.Array) -> Any:
    """The default state reorder: row i of every leaf taken from row rows[i], one take of whole rows on axis 0
    (contiguous copies, no reshape: state arrays may have a 0-size axis)."""
    return jax.tree.map(lambda x: jnp.take(x, rows, axis=0), state)
