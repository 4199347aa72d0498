"""Transformer blocks named as bentrevett tutorial 6: multi-head attention, feed-forward, layers.

Submodule names are the tutorial's (`self_attention.fc_q`, `positionwise_feedforward.fc_1`,
`self_attn_layer_norm`, ...), so the torch conversion table is a rename. Each
layer is post-LN (the tutorial, Vaswani et al.) or pre-LN (`pre_ln=True`:
norm before each sublayer, residual untouched, which trains stably without
warmup tricks). LayerNorm uses torch's eps 1e-5 and the two-pass variance so
both frameworks agree to float rounding.

Attention is split into `kv` (project keys/values) and `__call__` (attend with
given keys/values), so a decoder can precompute the encoder's keys/values once
and grow a fixed-size self-attention cache one position per step.

How attention is computed is chosen per backend (`s2s_jax.backend`): under the "cpu" kernels the explicit
einsum / masked softmax / einsum that XLA CPU runs well; under the "gpu" ones `jax.nn.dot_product_attention`,
with cuDNN's flash attention on a GPU in bf16/fp16 (`attention_implementation`), its XLA form otherwise. The
fused call cannot drop attention weights, so a training pass with attention dropout keeps the explicit form
(`MultiHeadAttention.fused`). The weights a caller may ask for (`return_attention`, plots) are always the
explicit softmax, computed beside the fused output: under jit, XLA drops them when nothing reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.backend import kernels, on_accelerator
from s2s_jax.layers.dense import Dense
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import uniform

NEG = -1e10  # the tutorial's masked_fill value: exp underflows to exactly 0
# Feed-forward nonlinearities by config name; swish is SiLU (OPUS-MT), gelu the exact erf form (HF, fairseq).
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "swish": jax.nn.silu, "gelu": lambda x: jax.nn.gelu(x, approximate=False)}


def dense(features: int, fan_in: int, torch_bias: bool) -> nn.Dense:
    """Xavier-uniform kernel (tutorial 6's `initialize_weights`, also Vaswani's); bias as torch's default or zero."""
    bias_init = uniform(1.0 / math.sqrt(fan_in)) if torch_bias else nn.initializers.zeros
    return Dense(features, kernel_init=nn.initializers.xavier_uniform(), bias_init=bias_init)


def layer_norm() -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-5, use_fast_variance=False)


def write_cache(cache: jax.Array, new: jax.Array, pos: jax.Array) -> jax.Array:
    """cache [B, h, M, d] with new [B, h, 1, d] written at each row's position pos [B] (no-op past M).

    A scatter writes only the new entries; a masked select over the cache would
    read and rewrite all of it at every decoding step.
    """
    rows = jnp.arange(cache.shape[0])
    return cache.at[rows, :, pos].set(new[:, :, 0], mode="drop")


def attention_implementation(dtype: jnp.dtype, head_dim: int) -> str:
    """`jax.nn.dot_product_attention`'s implementation: "cudnn" on a GPU for bf16/fp16 with a head size cuDNN's
    flash attention takes (a multiple of 8, at most 128), else "xla" (float32, and every run on CPU)."""
    half = jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    return "cudnn" if on_accelerator() and half and head_dim % 8 == 0 and head_dim <= 128 else "xla"


def fused_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(d), masked) v through `jax.nn.dot_product_attention`.

    q [B, T, h, d] (BTNH, the projection's own layout: no transpose); k, v [B, h, S, d] (the cache layout);
    mask broadcastable to [B, h, T, S], True = attend -> out [B, T, h, d]. The mask is broadcast over T and S
    because cuDNN takes it as a bias of full [T, S] (batch and heads may broadcast).
    """
    b, t, _, d = q.shape
    kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)
    mask = jnp.broadcast_to(mask, (mask.shape[0], 1, t, k.shape[2]))
    impl = attention_implementation(q.dtype, d)
    return jax.nn.dot_product_attention(q, kt, vt, mask=mask, scale=1.0 / math.sqrt(d), implementation=impl)


class MultiHeadAttention(nn.Module):
    hid_dim: int
    n_heads: int
    dropout: float
    torch_bias: bool = True

    def setup(self) -> None:
        h = self.hid_dim
        self.fc_q, self.fc_k, self.fc_v, self.fc_o = (dense(h, h, self.torch_bias) for _ in range(4))
        self.drop = Dropout(self.dropout)

    def _split(self, x: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        return x.reshape(b, t, self.n_heads, self.hid_dim // self.n_heads).transpose(0, 2, 1, 3)

    def kv(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x [B, S, H] -> keys, values [B, heads, S, head_dim]."""
        return self._split(self.fc_k(x)), self._split(self.fc_v(x))

    def fused(self, train: bool) -> bool:
        """Whether to attend with `fused_attention`: under the "gpu" kernels, unless attention weights are
        dropped (training with a rate > 0), which the fused call cannot do."""
        return kernels() == "gpu" and not (train and self.dropout > 0.0)

    def __call__(self, x: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *, train: bool = False):
        """Queries from x [B, T, H] over k, v; mask broadcasts to [B, heads, T, S] -> (out [B, T, H], weights)."""
        b, t, _ = x.shape
        q = self.fc_q(x)
        energy = jnp.einsum("bhtd,bhsd->bhts", self._split(q), k) / math.sqrt(self.hid_dim // self.n_heads)
        weights = jax.nn.softmax(jnp.where(mask, energy, NEG), axis=-1)
        if self.fused(train):
            out = fused_attention(q.reshape(b, t, self.n_heads, -1), k, v, mask).reshape(b, t, self.hid_dim)
        else:
            out = jnp.einsum("bhts,bhsd->bhtd", self.drop(weights, deterministic=not train), v)
            out = out.transpose(0, 2, 1, 3).reshape(b, t, self.hid_dim)
        return self.fc_o(out), weights


class FeedForward(nn.Module):
    hid_dim: int
    ff_dim: int
    dropout: float
    torch_bias: bool = True
    activation: str = "relu"

    def setup(self) -> None:
        self.fc_1 = dense(self.ff_dim, self.hid_dim, self.torch_bias)
        self.fc_2 = dense(self.hid_dim, self.ff_dim, self.torch_bias)
        self.drop = Dropout(self.dropout)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        return self.fc_2(self.drop(ACTIVATIONS[self.activation](self.fc_1(x)), deterministic=not train))


class _Layer(nn.Module):
    """Shared residual wiring; subclasses define the sublayers.

    `dropout` acts on sublayer outputs; attention weights and the feed-forward activation take
    `attention_dropout` / `activation_dropout` when given (HF and fairseq keep three rates), else `dropout`.
    """

    hid_dim: int
    n_heads: int
    ff_dim: int
    dropout: float
    pre_ln: bool = False
    torch_bias: bool = True
    activation: str = "relu"
    attention_dropout: float | None = None
    activation_dropout: float | None = None

    def _attention(self) -> MultiHeadAttention:
        rate = self.dropout if self.attention_dropout is None else self.attention_dropout
        return MultiHeadAttention(self.hid_dim, self.n_heads, rate, self.torch_bias)

    def _feedforward(self) -> FeedForward:
        rate = self.dropout if self.activation_dropout is None else self.activation_dropout
        return FeedForward(self.hid_dim, self.ff_dim, rate, self.torch_bias, self.activation)

    def _sublayer(self, x: jax.Array, norm: nn.Module, fn: Callable[[jax.Array], tuple[jax.Array, Any]],
                  train: bool) -> tuple[jax.Array, Any]:
        """Pre-LN: x + drop(f(norm(x))); post-LN: norm(x + drop(f(x))). Returns f's extra output too."""
        if self.pre_ln:
            y, extra = fn(norm(x))
            return x + self.drop(y, deterministic=not train), extra
        y, extra = fn(x)
        return norm(x + self.drop(y, deterministic=not train)), extra

    def _ff(self, train: bool) -> Callable[[jax.Array], tuple[jax.Array, None]]:
        return lambda h: (self.positionwise_feedforward(h, train=train), None)


class EncoderLayer(_Layer):
    def setup(self) -> None:
        self.self_attn_layer_norm = layer_norm()
        self.ff_layer_norm = layer_norm()
        self.self_attention = self._attention()
        self.positionwise_feedforward = self._feedforward()
        self.drop = Dropout(self.dropout)

    def __call__(self, x: jax.Array, mask: jax.Array, *, train: bool = False) -> jax.Array:
        def attend(h):
            k, v = self.self_attention.kv(h)
            return self.self_attention(h, k, v, mask, train=train)

        x, _ = self._sublayer(x, self.self_attn_layer_norm, attend, train)
        x, _ = self._sublayer(x, self.ff_layer_norm, self._ff(train), train)
        return x


class DecoderLayer(_Layer):
    def setup(self) -> None:
        self.self_attn_layer_norm = layer_norm()
        self.enc_attn_layer_norm = layer_norm()
        self.ff_layer_norm = layer_norm()
        self.self_attention = self._attention()
        self.encoder_attention = self._attention()
        self.positionwise_feedforward = self._feedforward()
        self.drop = Dropout(self.dropout)

    def cross_kv(self, memory: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The encoder-attention keys/values of `memory` [B, S, H], computed once per source."""
        return self.encoder_attention.kv(memory)

    def __call__(self, x: jax.Array, self_mask: jax.Array, cross: tuple[jax.Array, jax.Array], src_mask: jax.Array,
                 *, cache: tuple[jax.Array, jax.Array] | None = None, pos: jax.Array | None = None,
                 train: bool = False):
        """x [B, T, H] -> (x, encoder-attention weights, self-attention (keys, values)).

        With `cache` (keys, values [B, h, M, d]) the new positions' keys/values are
        written at `pos` and attention runs over the whole cache (masked by self_mask).
        `cross` and `src_mask` may hold fewer rows than x, B / K each used by K consecutive rows of x (beam search).
        """

        def self_attend(h):
            k, v = self.self_attention.kv(h)
            if cache is not None:
                k, v = write_cache(cache[0], k, pos), write_cache(cache[1], v, pos)
            out, _ = self.self_attention(h, k, v, self_mask, train=train)
            return out, (k, v)

        def cross_attend(h):
            sentences = cross[0].shape[0]
            if sentences == h.shape[0]:
                return self.encoder_attention(h, cross[0], cross[1], src_mask, train=train)
            # Beam search's rows: K consecutive rows per sentence share its keys/values, so their queries are
            # attended as K * T positions of that sentence (keys/values read once, not K times).
            rows, t, width = h.shape
            out, weights = self.encoder_attention(h.reshape(sentences, -1, width), cross[0], cross[1], src_mask,
                                                  train=train)
            heads, keys = weights.shape[1], weights.shape[-1]
            weights = weights.reshape(sentences, heads, -1, t, keys).transpose(0, 2, 1, 3, 4)
            return out.reshape(rows, t, width), weights.reshape(rows, heads, t, keys)

        x, kv = self._sublayer(x, self.self_attn_layer_norm, self_attend, train)
        x, weights = self._sublayer(x, self.enc_attn_layer_norm, cross_attend, train)
        x, _ = self._sublayer(x, self.ff_layer_norm, self._ff(train), train)
        return x, weights, kv
