"""Greedy decoding for any family, through the model contract only.

One jitted function: `encode`, `init_decode_state`, then a `lax.while_loop` of
`decode_step` + argmax that stops as soon as every row has emitted eos, or after
`max_len` tokens. Nothing here knows what a family's decode state holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.models import check_decode_len


def greedy_decode(
    model: nn.Module,
    params: Any,
    src: jax.Array,
    src_lengths: jax.Array,
    *,
    max_len: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
) -> tuple[jax.Array, jax.Array]:
    """Tokens [B, max_len] (pad after each row's eos) and lengths [B].

    A row's length counts its tokens up to and including eos, or is max_len if
    it never emitted eos. The first decoder input is bos (not part of the output).
    """
    check_decode_len(model.cfg, max_len)
    v = {"params": params}
    enc = model.apply(v, src, src_lengths, method="encode")
    state = model.apply(v, enc, max_decode_len=max_len, method="init_decode_state")  # sizes KV caches
    batch = src.shape[0]

    def cond(carry):
        t, _, _, done, _ = carry
        return (t < max_len) & ~jnp.all(done)

    def body(carry):
        t, token, state, done, tokens = carry
        out = model.apply(v, enc, token, state, method="decode_step")
        logits, state = out[0], out[1]  # attention models may append weights
        nxt = jnp.argmax(logits, axis=-1).astype(jnp.int32)
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


def make_greedy_decoder(model: nn.Module, max_len: int) -> Callable[[Any, jax.Array, jax.Array], tuple]:
    """`decode(params, src, src_lengths) -> (tokens, lengths)`, jitted once; special ids from `model.cfg`.

    A `max_len` beyond what the model can decode (learned position tables) is a UserError here, not NaNs later.
    """
    cfg = model.cfg
    check_decode_len(cfg, max_len)

    def decode(params: Any, src: jax.Array, src_lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        return greedy_decode(
            model, params, src, src_lengths, max_len=max_len, bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id
        )

    return jax.jit(decode)
