"""`make_greedy_decoder`: the jitted greedy decoder of training's validation and the CLI, over `search`.

Greedy is `search` at beam 1 and temperature 0 (`sampling.pick_search`'s argmax loop)
with no per-row length bound: encode, `init_decode_state`, then a `lax.while_loop` of
decode_step + argmax that stops as soon as every row has emitted eos, or after
`max_len` tokens. Kept as a function of (model, max_len) because its callers compile
it once and call it with params each evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from s2s_jax.decoding.search import decode_source
from s2s_jax.models import check_decode_len


def make_greedy_decoder(model: nn.Module, max_len: int) -> Callable[[Any, jax.Array, jax.Array], tuple]:
    """`decode(params, src, src_lengths) -> (tokens [B, max_len], lengths [B])`, jitted once; special ids from
    `model.cfg`. Tokens are pad after each row's eos; a row's length counts its tokens through eos, or is
    max_len if it never emitted eos. The first decoder input is bos (not part of the output).

    A `max_len` beyond what the model can decode (learned position tables) is a UserError here, not NaNs later.
    """
    check_decode_len(model.cfg, max_len)

    def decode(params: Any, src: jax.Array, src_lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
        r = decode_source(model, params, src, src_lengths, max_len=max_len)
        return r.tokens[:, 0], r.lengths[:, 0]

    return jax.jit(decode)
