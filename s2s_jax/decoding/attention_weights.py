"""Attention weights of an already-decoded output, for plotting (`s2s-jax translate --plot-attention`).

The weights come from one teacher-forced `decode(..., return_attention=True)` over
the decoder inputs the decoding itself used (bos, then the decoded tokens). Every
family's full decode equals its step-by-step decode (the `checks.py` invariant), so
row t is the weights the model had when it emitted output token t, without a
second, weight-collecting decoding loop.

Which weights (one [T, S] map per sentence):
- `attention` family: the decoder's attention (additive, Luong, or the PyTorch
  tutorial's location attention, whose columns past the source are its padded
  max_len positions).
- `convs2s`: the last decoder layer's attention (fconv attends in every layer;
  the last one is the one the output layer sees).
- `transformer`: the last decoder layer's encoder attention, averaged over heads.
- `rnn`: none; the decoder sees only the encoder's final state.

With `reverse_source` the encoder reads each source backwards; the columns are
put back in source order, so the plot's x axis is the sentence as written.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.config import ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.layers.rnn import reverse_within_lengths
from s2s_jax.models import FAMILIES, family


def check_has_attention(cfg: ModelConfig) -> None:
    """A UserError unless `cfg`'s family returns attention weights (its record's `attention`)."""
    if not family(cfg).attention:
        who = f"origin {cfg.origin!r}" if cfg.origin else "no origin"
        having = ", ".join(name for name, record in sorted(FAMILIES.items()) if record.attention)
        raise UserError(
            f"the {cfg.family!r} model ({who}) has no attention weights to plot; its decoder sees only the "
            f"encoder's final state. Attention weights come from the {having} families"
        )


def make_attention_weights(model: nn.Module) -> Any:
    """`weights(params, src, src_lengths, tokens) -> [B, T, S]`, jitted: the attention of each decoded token.

    tokens [B, T]: decoded outputs (as the greedy decoder returns them; positions after eos are ignored
    by whoever reads the rows). The decoder input is bos followed by tokens[:, :-1].
    """
    cfg = model.cfg
    check_has_attention(cfg)

    def weights(params: Any, src: jax.Array, src_lengths: jax.Array, tokens: jax.Array) -> jax.Array:
        v = {"params": params}
        bos = jnp.full((tokens.shape[0], 1), cfg.bos_id, tokens.dtype)
        tgt_in = jnp.concatenate([bos, tokens[:, :-1]], axis=1)
        enc = model.apply(v, src, src_lengths, method="encode")
        _, w = model.apply(v, enc, tgt_in, return_attention=True, method="decode")
        w = w.mean(axis=1) if w.ndim == 4 else w  # transformer: [B, heads, T, S] -> mean over heads
        if cfg.reverse_source:  # the encoder read each source backwards: put the columns back in source order
            w = reverse_within_lengths(w.swapaxes(1, 2), src_lengths).swapaxes(1, 2)
        return w

    return jax.jit(weights)

