"""Attention layers for RNN decoders: additive (Bahdanau), Luong dot/general, location.

Scorers that read the encoder outputs split into two parts:
- `keys(memory)`: everything that depends only on the encoder outputs, run once
  per sentence (in `encode`) instead of once per decoder step;
- `__call__(query, keys, values, mask)`: the per-step part. `query` is [B, Dq]
  (one decoder step) or [B, T, Dq] (all steps at once, possible when the queries
  do not depend on earlier contexts, as in Luong attention without input feeding).
They return `(context, weights)`, with weights [B, S] or [B, T, S] that are exactly
0 on padded source positions and sum to 1 over the rest.

Location attention (seed 000) does not read the encoder outputs to score; it is
faithful to its origin, softmax over all `max_len` positions, padded ones included.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.layers.dense import Dense
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import linear_kernel, uniform

# A finite "minus infinity": exp underflows to exactly 0, and a row with no valid
# position gives uniform weights instead of NaN.
NEG_INF = -1e9
ADDITIVE_LAYOUTS = ("concat_qk", "concat_kq", "separate")
LUONG_KINDS = ("dot", "general")


def masked_softmax(scores: jax.Array, mask: jax.Array) -> jax.Array:
    """Softmax over the last axis of scores [B, S] or [B, T, S]; mask [B, S] is True on real tokens."""
    if scores.ndim == 3:
        mask = mask[:, None, :]
    return jax.nn.softmax(jnp.where(mask, scores, NEG_INF), axis=-1)


def weighted_sum(weights: jax.Array, values: jax.Array) -> jax.Array:
    """weights [B, S] or [B, T, S], values [B, S, D] -> context [B, D] or [B, T, D]."""
    if weights.ndim == 2:
        return jnp.einsum("bs,bsd->bd", weights, values)
    return jnp.einsum("bts,bsd->btd", weights, values)


def _dense(features: int, fan_in: int, use_bias: bool = True, name: str | None = None) -> nn.Dense:
    """nn.Dense with torch.nn.Linear's initialisation."""
    return Dense(features, use_bias=use_bias, kernel_init=linear_kernel,
                    bias_init=uniform(1.0 / math.sqrt(fan_in)), name=name)


def _broadcast_query(q: jax.Array) -> jax.Array:
    """[B, F] -> [B, 1, F] against keys [B, S, F]; [B, T, F] -> [B, T, 1, F] against [B, 1, S, F]."""
    return q[:, None, :] if q.ndim == 2 else q[:, :, None, :]


def _broadcast_keys(keys: jax.Array, query_ndim: int) -> jax.Array:
    return keys if query_ndim == 2 else keys[:, None]


class AdditiveAttention(nn.Module):
    """Bahdanau attention, score(q, k) = v^T tanh(W_q q + W_k k + b).

    layout says how the origin stores W:
    - `concat_qk`: one Linear over the concatenation [q; k] (bentrevett `attn_fc`,
      hidden repeated first; Luong `concat`). Param `kernel` [Dq + Dk, F].
    - `concat_kq`: one Linear over [k; q] (seed 002 `W_a`, encoder states first).
    - `separate`: two bias-free Linears `W_q`, `W_k` (d2l `AdditiveAttention`).
    A concatenated weight stays one parameter with the origin's shape; its key rows
    are applied once per sentence in `keys`, its query rows at every step.
    `dropout` (d2l) drops the weights used for the context; the returned weights
    are the undropped ones, as d2l stores them.
    """

    query_dim: int
    key_dim: int
    features: int
    layout: str = "concat_qk"
    use_bias: bool = True
    dropout: float = 0.0

    def setup(self) -> None:
        if self.layout not in ADDITIVE_LAYOUTS:
            raise ValueError(f"layout={self.layout!r} is not one of {ADDITIVE_LAYOUTS}")
        if self.layout == "separate":
            self.W_q = _dense(self.features, self.query_dim, use_bias=False)
            self.W_k = _dense(self.features, self.key_dim, use_bias=False)
        else:
            fan_in = self.query_dim + self.key_dim
            self.kernel = self.param("kernel", linear_kernel, (fan_in, self.features))
            if self.use_bias:
                self.bias = self.param("bias", uniform(1.0 / math.sqrt(fan_in)), (self.features,))
        self.v = _dense(1, self.features, use_bias=False)
        self.drop = Dropout(self.dropout)

    def _rows(self) -> tuple[jax.Array, jax.Array]:
        """(query rows, key rows) of the concatenated kernel."""
        if self.layout == "concat_qk":
            return self.kernel[: self.query_dim], self.kernel[self.query_dim :]
        return self.kernel[self.key_dim :], self.kernel[: self.key_dim]

    def keys(self, memory: jax.Array) -> jax.Array:
        """memory [B, S, Dk] -> projected keys [B, S, F] (the bias, if any, is folded in here)."""
        if self.layout == "separate":
            return self.W_k(memory)
        keys = memory @ self._rows()[1]
        return keys + self.bias if self.use_bias else keys

    def __call__(self, query: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array,
                 *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        q = self.W_q(query) if self.layout == "separate" else query @ self._rows()[0]
        energy = jnp.tanh(_broadcast_query(q) + _broadcast_keys(keys, query.ndim))
        weights = masked_softmax(self.v(energy)[..., 0], mask)
        return weighted_sum(self.drop(weights, deterministic=not train), values), weights


class LuongAttention(nn.Module):
    """Luong et al. (2015) multiplicative scores: `dot` q . k, `general` q . (W_a k).

    For `general`, W_a (a bias-free Linear) is applied to the keys once per sentence.
    Luong's `concat` score is `AdditiveAttention(layout="concat_qk", use_bias=False)`.
    """

    kind: str
    hidden: int

    def setup(self) -> None:
        if self.kind not in LUONG_KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {LUONG_KINDS}")
        if self.kind == "general":
            self.W_a = _dense(self.hidden, self.hidden, use_bias=False)

    def keys(self, memory: jax.Array) -> jax.Array:
        return self.W_a(memory) if self.kind == "general" else memory

    def __call__(self, query: jax.Array, keys: jax.Array, values: jax.Array, mask: jax.Array,
                 *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        if query.ndim == 2:
            scores = jnp.einsum("bd,bsd->bs", query, keys)
        else:
            scores = jnp.einsum("btd,bsd->bts", query, keys)
        weights = masked_softmax(scores, mask)
        return weighted_sum(weights, values), weights


class LocationAttention(nn.Module):
    """The PyTorch tutorial's `AttnDecoderRNN` attention (seed 000).

    weights = softmax(attn([emb; hidden])) over `max_len` positions: they depend on
    the decoder input and state only, never on the encoder outputs, and are spread
    over all `max_len` positions (the origin pads the encoder outputs with zeros to
    `max_len`, so weight on padding is lost mass, not an error). Param `score` is the
    origin's `attn` Linear(emb + hidden -> max_len).
    """

    in_features: int
    max_len: int

    def setup(self) -> None:
        self.score = _dense(self.max_len, self.in_features)

    def __call__(self, emb: jax.Array, hidden: jax.Array, values: jax.Array) -> tuple[jax.Array, jax.Array]:
        """emb [B, E], hidden [B, H], values [B, max_len, D] (zero-padded) -> (context [B, D], weights [B, max_len]).

        values may hold B / K sentences, each shared by K consecutive rows (beam search's shared encoder output).
        """
        weights = jax.nn.softmax(self.score(jnp.concatenate([emb, hidden], axis=-1)), axis=-1)
        rows, sentences = weights.shape[0], values.shape[0]
        if rows == sentences:
            return weighted_sum(weights, values), weights
        return weighted_sum(weights.reshape(sentences, rows // sentences, -1), values).reshape(rows, -1), weights
