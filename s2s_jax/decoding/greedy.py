"""Greedy decoding for any family, through the model contract only.

Greedy is the token-picking loop of `sampling.py` at temperature 0 (argmax) with
no per-row length bound: `encode`, `init_decode_state`, then a `lax.while_loop`
of `decode_step` + argmax that stops as soon as every row has emitted eos, or
after `max_len` tokens. One loop serves both, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from s2s_jax.decoding.sampling import sample_decode
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
    return sample_decode(model, params, src, src_lengths, None, max_len=max_len, bos_id=bos_id, eos_id=eos_id,
                         pad_id=pad_id, temperature=0.0)


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
