"""The one-hypothesis loop of `search` (beam 1): argmax (greedy) at temperature 0, else sampling.

Internal to `s2s_jax.decoding`: call `search.search(step, enc, state, ...)` with beam 1.
A `lax.while_loop` of `step` that picks one token per row and stops once every row has
emitted eos or after `max_len` tokens. An optional per-row length bound `row_max_len`
forces eos on a row's last allowed step, exactly as beam search does, so the beam
algorithm at beam 1 gives these tokens and scores under the same bound (without it
nothing is forced: a row may end without eos). The token choice: `temperature == 0`
is argmax (greedy), otherwise a draw from softmax(log_probs / temperature), restricted
to the `top_k` most likely tokens when top_k > 0 and to the top-p nucleus when top_p < 1.
Row b draws step t with `fold_in(keys[b], t)`, so a seed fixes the output, and a row's
draws do not depend on the other rows (the Translator derives keys[b] from the seed and
the sentence). n-gram blocking, the prefix and the last-step eos are `constraints.constrain`.

A row's score is what beam search scores a hypothesis: the sum of its chosen tokens'
log-probs (the model's, not tempered; through eos) over ((5 + length) / 6) ** alpha.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from s2s_jax.decoding.common import NEG_INF, SearchResult, length_penalty
from s2s_jax.decoding.constraints import constrain
from s2s_jax.decoding.topk import argmax

StepFn = Callable[[Any, jax.Array, Any], tuple[jax.Array, Any]]


def sampling_logits(logp: jax.Array, temperature: float, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """[N, V] log-probs -> the logits sampling draws from: logp / temperature, NEG_INF outside the support.

    top_k > 0 keeps the k most likely tokens (ties at the k-th kept); top_p < 1 then keeps the smallest set of
    most likely tokens whose probability reaches top_p (nucleus sampling: a token is kept while the
    probability of the tokens above it is below top_p, so the most likely always is; ties at the cut kept).
    `export/search.py` computes the same support and probabilities in numpy."""
    logits = logp.astype(jnp.float32) / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        ranked = -jnp.sort(-logits, axis=-1)
        probs = jax.nn.softmax(ranked, axis=-1)
        above = jnp.cumsum(probs, axis=-1) - probs
        cut = jnp.min(jnp.where(above < top_p, ranked, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cut, NEG_INF, logits)
    return logits


def row_keys(key: jax.Array, batch: int) -> jax.Array:
    """[batch] keys, one per row: `key` itself when it is already one per row, else fold_in(key, row)."""
    if key.shape == (batch,):
        return key
    return jax.vmap(lambda r: jax.random.fold_in(key, r))(jnp.arange(batch))


def pick_tokens(logp: jax.Array, keys: jax.Array, temperature: float, top_k: int, top_p: float = 1.0) -> jax.Array:
    """[B, V] log-probs -> [B] int32 tokens: argmax when temperature is 0, else a (top-k / top-p) sample, row b
    drawn with keys[b] alone (so a row's draw does not depend on the other rows)."""
    if temperature == 0.0:
        return argmax(logp)
    logits = sampling_logits(logp, temperature, top_k, top_p)
    return jax.vmap(jax.random.categorical)(keys, logits).astype(jnp.int32)


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
    top_p: float = 1.0,
    key: jax.Array | None = None,
    no_repeat_ngram: int = 0,
    prefix: jax.Array | None = None,
    prefix_lengths: jax.Array | None = None,
) -> SearchResult:
    """One hypothesis per row (K = 1) from `enc` and `state` (batch B); see `search.search`. Call inside `jax.jit`."""
    keys = row_keys(jax.random.key(0) if key is None else key, batch)
    limit = None if row_max_len is None else jnp.minimum(row_max_len, max_len)

    def cond(carry):
        t, _, _, done, _, _, _ = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, token, state, done, tokens, chosen_logp, logp_sum = carry
        logp, state = step(enc, token, state)
        last = None if limit is None else t + 1 >= limit  # eos forced there (without limits nothing is forced)
        logp = constrain(logp.astype(jnp.float32), t, eos_id=eos_id, last=last, generated=tokens,
                         no_repeat_ngram=no_repeat_ngram, prefix=prefix, prefix_lengths=prefix_lengths)
        nxt = pick_tokens(logp, jax.vmap(jax.random.fold_in, (0, None))(keys, t), temperature, top_k, top_p)
        chosen = jnp.take_along_axis(logp, nxt[:, None], axis=1)[:, 0]
        chosen = jnp.where(done, 0.0, chosen)
        logp_sum = logp_sum + chosen  # the order of beam search's sums: equal scores
        chosen_logp = chosen_logp.at[:, t].set(chosen)
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, t].set(nxt)
        return t + 1, nxt, state, done | (nxt == eos_id), tokens, chosen_logp, logp_sum

    init = (
        jnp.zeros((), jnp.int32),
        jnp.full((batch,), bos_id, jnp.int32),
        state,
        jnp.zeros((batch,), bool),
        jnp.full((batch, max_len), pad_id, jnp.int32),
        jnp.zeros((batch, max_len), jnp.float32),
        jnp.zeros((batch,), jnp.float32),
    )
    _, _, _, _, tokens, chosen_logp, logp_sum = jax.lax.while_loop(cond, body, init)
    is_eos = tokens == eos_id
    lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_len).astype(jnp.int32)
    scores = logp_sum / length_penalty(lengths.astype(jnp.float32), alpha)
    return SearchResult(tokens=tokens[:, None], lengths=lengths[:, None], scores=scores[:, None],
                        token_scores=chosen_logp[:, None])
