"""The one-hypothesis loop of `search` (beam 1): argmax (greedy) at temperature 0, else sampling.

Internal to `s2s_jax.decoding`: call `search.search(step, enc, state, ...)` with beam 1.
A `lax.while_loop` of `step` that picks one token per row and stops once every row has
emitted eos or after `max_len` tokens. An optional per-row length bound `row_max_len`
forces eos on a row's last allowed step, exactly as beam search does, so the beam
algorithm at beam 1 gives these tokens and scores under the same bound (without it
nothing is forced: a row may end without eos). The token choice: `temperature == 0`
is argmax (greedy), otherwise a draw from softmax(log_probs / temperature), restricted
to the `top_k` most likely tokens when top_k > 0. Step t draws with `fold_in(key, t)`,
so a seed fixes the output.

A row's score is what beam search scores a hypothesis: the sum of its chosen tokens'
log-probs (the model's, not tempered; through eos) over ((5 + length) / 6) ** alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax.decoding.common import NEG_INF, SearchResult, length_penalty

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]


def pick_tokens(logp: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
    """[B, V] log-probs -> [B] int32 tokens: argmax when temperature is 0, else a (top-k) sample."""
    if temperature == 0.0:
        return jnp.argmax(logp, axis=-1).astype(jnp.int32)
    logits = logp.astype(jnp.float32) / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def pick_search(
    step: StepFn,
    enc: Any,
    state: Any,
    *,
    batch: int,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    alpha: float = 0.0,
    row_max_len: jax.Array | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    key: jax.Array | None = None,
) -> SearchResult:
    """One hypothesis per row (K = 1) from `enc` and `state` (batch B); see `search.search`. Call inside `jax.jit`."""
    key = jax.random.key(0) if key is None else key
    limit = None if row_max_len is None else jnp.minimum(row_max_len, max_len)

    def cond(carry):
        t, _, _, done, _, _ = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, token, state, done, tokens, logp_sum = carry
        logp, state = step(enc, token, state)
        logp = logp.astype(jnp.float32)
        if limit is not None:  # force eos on a row's last allowed step (without limits nothing is forced)
            last = (t + 1 >= limit)[:, None]
            logp = jnp.where(last & (jnp.arange(logp.shape[-1]) != eos_id), NEG_INF, logp)
        nxt = pick_tokens(logp, jax.random.fold_in(key, t), temperature, top_k)
        chosen = jnp.take_along_axis(logp, nxt[:, None], axis=1)[:, 0]
        logp_sum = logp_sum + jnp.where(done, 0.0, chosen)  # the order of beam search's sums: equal scores
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, t].set(nxt)
        return t + 1, nxt, state, done | (nxt == eos_id), tokens, logp_sum

    init = (
        jnp.zeros((), jnp.int32),
        jnp.full((batch,), bos_id, jnp.int32),
        state,
        jnp.zeros((batch,), bool),
        jnp.full((batch, max_len), pad_id, jnp.int32),
        jnp.zeros((batch,), jnp.float32),
    )
    _, _, _, _, tokens, logp_sum = jax.lax.while_loop(cond, body, init)
    is_eos = tokens == eos_id
    lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_len).astype(jnp.int32)
    scores = logp_sum / length_penalty(lengths.astype(jnp.float32), alpha)
    return SearchResult(tokens=tokens[:, None], lengths=lengths[:, None], scores=scores[:, None])
