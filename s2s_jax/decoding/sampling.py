"""Step-by-step decoding that picks one token per row: sampling (temperature, top-k), or argmax.

The one token-picking loop (`greedy.py` is this loop at temperature 0): encode,
`init_decode_state`, then a `lax.while_loop` of `decode_step` that stops once
every row has emitted eos or after `max_len` tokens. An optional per-row length
bound `row_max_len` forces eos on a row's last allowed step, exactly as beam
search does, so beam 1 equals argmax here under the same bound (without it
nothing is forced). The token choice:
`temperature == 0` is argmax (greedy), otherwise a draw from
softmax(logits / temperature), restricted to the `top_k` most likely tokens
when top_k > 0. Step t draws with `fold_in(key, t)`, so a seed fixes the output.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.models import check_decode_len

NEG_INF = -1.0e9


def pick_tokens(logits: jax.Array, key: jax.Array, temperature: float, top_k: int) -> jax.Array:
    """[B, V] logits -> [B] int32 tokens: argmax when temperature is 0, else a (top-k) sample."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, NEG_INF, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def sample_decode(
    model: nn.Module,
    params: Any,
    src: jax.Array,
    src_lengths: jax.Array,
    key: jax.Array | None = None,
    *,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_k: int = 0,
    row_max_len: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Tokens [B, max_len] (pad after eos) and lengths [B] (through eos, or the row's bound if never emitted).

    Call inside `jax.jit` with `max_len`, `temperature`, `top_k` static. `key` may be None for temperature 0.
    """
    if temperature < 0 or top_k < 0:
        raise ValueError(f"temperature={temperature} and top_k={top_k} must be >= 0")
    check_decode_len(model.cfg, max_len)
    key = jax.random.key(0) if key is None else key
    v = {"params": params}
    enc = model.apply(v, src, src_lengths, method="encode")
    state = model.apply(v, enc, max_decode_len=max_len, method="init_decode_state")
    batch = src.shape[0]
    limit = None if row_max_len is None else jnp.minimum(row_max_len, max_len)

    def cond(carry):
        t, _, _, done, _ = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, token, state, done, tokens = carry
        out = model.apply(v, enc, token, state, method="decode_step")
        logits, state = out[0], out[1]  # attention models may append weights
        if limit is not None:  # force eos on a row's last allowed step (without limits: exactly greedy.py)
            last = (t + 1 >= limit)[:, None]
            logits = jnp.where(last & (jnp.arange(logits.shape[-1]) != eos_id), NEG_INF, logits)
        nxt = pick_tokens(logits, jax.random.fold_in(key, t), temperature, top_k)
        nxt = jnp.where(done, pad_id, nxt)
        tokens = tokens.at[:, t].set(nxt)
        return t + 1, nxt, state, done | (nxt == eos_id), tokens

    init = (
        jnp.zeros((), jnp.int32),
        jnp.full((batch,), bos_id, jnp.int32),
        state,
        jnp.zeros((batch,), bool),
        jnp.full((batch, max_len), pad_id, jnp.int32),
    )
    _, _, _, _, tokens = jax.lax.while_loop(cond, body, init)
    is_eos = tokens == eos_id
    lengths = jnp.where(jnp.any(is_eos, axis=1), jnp.argmax(is_eos, axis=1) + 1, max_len).astype(jnp.int32)
    return tokens, lengths
