"""The Transformer family: bentrevett tutorial 6 and a modern pre-LN layout, one class.

Shared by both: token embeddings x sqrt(hid_dim) plus positions, dropout,
`n_layers` encoder and decoder layers (`s2s_jax.layers.transformer`), source
padding masked in every attention, causal decoder self-attention.
- `bentrevett-transformer`: post-LN, learned positions (max_len rows), separate
  `fc_out`, the tutorial's init (xavier-uniform on every matrix, embeddings
  included; torch-default biases).
- `transformer`: pre-LN with final layer norms (`encoder.layer_norm`,
  `decoder.layer_norm`), sinusoidal positions (no length limit), optionally the
  output layer tied to the decoder embedding (`tie_embeddings`), fairseq's init
  (xavier linears with zero biases, embeddings N(0, hid^-1/2)).
`hid_dim` is the model width; `emb_dim` is not used by this family.

Incremental decoding: `encode` precomputes every decoder layer's
encoder-attention keys/values; `init_decode_state` allocates a fixed-size
self-attention cache per layer ([B, heads, M, head_dim], M = max_decode_len or
cfg.max_len) and `decode_step` writes one position and attends over the
cache, so each step's cost does not depend on how many steps came before.
"""

from __future__ import annotations

import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from s2s_jax.config import ModelConfig
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.positions import check_length, sinusoidal
from s2s_jax.layers.transformer import DecoderLayer, EncoderLayer, dense, layer_norm
from s2s_jax.models.family import Family

KV = tuple[jax.Array, ...]


@flax.struct.dataclass
class EncoderOutput:
    """Per decoder layer, encoder-attention keys and values [B, heads, S, head_dim]; src_mask [B, S]."""

    cross_k: KV
    cross_v: KV
    src_mask: jax.Array


@flax.struct.dataclass
class DecodeState:
    """Per layer self-attention keys/values [B, heads, M, head_dim]; pos [B]: the position being decoded."""

    keys: KV
    values: KV
    pos: jax.Array


REORDER_BLOCK = 8


def reorder_prefix(cache: jax.Array, rows: jax.Array, used: jax.Array) -> jax.Array:
    """cache [R, heads, M, d] with positions < used taken from rows `rows` [R]; blocks past them untouched.

    A loop over blocks of REORDER_BLOCK positions, as many as `used` needs, each
    gathered and written back in place: the work grows with the positions
    written so far rather than with the cache's static size M. Positions from
    `used` to the end of its block are gathered too, which is harmless: they are
    written before they are attended. The last block is clamped inside M, and
    positions an earlier block already reordered are not gathered twice.
    """
    size = cache.shape[2]
    block = min(REORDER_BLOCK, size)

    def body(b: jax.Array, c: jax.Array) -> jax.Array:
        start = jnp.minimum(b * block, size - block)
        old = jax.lax.dynamic_slice_in_dim(c, start, block, axis=2)
        fresh = (start + jnp.arange(block) >= b * block).reshape((1, 1, block) + (1,) * (c.ndim - 3))
        return jax.lax.dynamic_update_slice_in_dim(c, jnp.where(fresh, jnp.take(old, rows, axis=0), old), start, axis=2)

    return jax.lax.fori_loop(0, (jnp.minimum(used, size) + block - 1) // block, body, cache)


def _is_origin(cfg: ModelConfig) -> bool:
    return cfg.origin == "bentrevett-transformer"


class _Embed(nn.Module):
    """tok_embedding(x) * sqrt(hid) + positions, then dropout."""

    cfg: ModelConfig
    vocab_size: int

    def setup(self) -> None:
        c = self.cfg
        init = (nn.initializers.xavier_uniform() if _is_origin(c)
                else nn.initializers.normal(c.hid_dim**-0.5))
        self.tok_embedding = nn.Embed(self.vocab_size, c.hid_dim, embedding_init=init)
        if c.positions == "learned":
            self.pos_embedding = nn.Embed(c.max_len, c.hid_dim, embedding_init=init)
        self.drop = Dropout(c.dropout)

    def embed(self, tokens: jax.Array, positions: jax.Array, *, train: bool) -> jax.Array:
        c = self.cfg
        pos = self.pos_embedding(positions) if c.positions == "learned" else sinusoidal(positions, c.hid_dim)
        x = self.tok_embedding(tokens) * math.sqrt(c.hid_dim)
        return self.drop(x + pos.astype(x.dtype), deterministic=not train)  # sinusoids are float32: keep bf16


def _layer_args(cfg: ModelConfig) -> dict:
    return dict(hid_dim=cfg.hid_dim, n_heads=cfg.n_heads, ff_dim=cfg.ff_dim, dropout=cfg.dropout,
                pre_ln=cfg.pre_ln, torch_bias=_is_origin(cfg))


class TransformerEncoder(_Embed):
    def setup(self) -> None:
        super().setup()
        self.layers = [EncoderLayer(**_layer_args(self.cfg)) for _ in range(self.cfg.n_layers)]
        if self.cfg.pre_ln:
            self.layer_norm = layer_norm()

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """src [B, S] -> (memory [B, S, H], src_mask [B, S])."""
        if self.cfg.positions == "learned":
            check_length(src.shape[1], self.cfg.max_len, "source")
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        x = self.embed(src, jnp.arange(src.shape[1])[None], train=train)
        for layer in self.layers:
            x = layer(x, mask[:, None, None, :], train=train)
        return (self.layer_norm(x) if self.cfg.pre_ln else x), mask


class TransformerDecoder(_Embed):
    def setup(self) -> None:
        super().setup()
        c = self.cfg
        self.layers = [DecoderLayer(**_layer_args(c)) for _ in range(c.n_layers)]
        if c.pre_ln:
            self.layer_norm = layer_norm()
        if not c.tie_embeddings:
            self.fc_out = dense(c.tgt_vocab_size, c.hid_dim, _is_origin(c))

    def cross_kv(self, memory: jax.Array) -> tuple[KV, KV]:
        kvs = [layer.cross_kv(memory) for layer in self.layers]
        return tuple(k for k, _ in kvs), tuple(v for _, v in kvs)

    def _out(self, x: jax.Array) -> jax.Array:
        if self.cfg.pre_ln:
            x = self.layer_norm(x)
        return self.tok_embedding.attend(x) if self.cfg.tie_embeddings else self.fc_out(x)

    def decode(self, enc: EncoderOutput, tgt: jax.Array, *, train: bool = False) -> tuple[jax.Array, jax.Array]:
        """Teacher-forced tgt [B, T] -> (logits [B, T, V], last layer's encoder attention [B, heads, T, S])."""
        t = tgt.shape[1]
        if self.cfg.positions == "learned":
            check_length(t, self.cfg.max_len, "target")
        x = self.embed(tgt, jnp.arange(t)[None], train=train)
        causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
        src_mask = enc.src_mask[:, None, None, :]
        weights = None
        for i, layer in enumerate(self.layers):
            x, weights, _ = layer(x, causal, (enc.cross_k[i], enc.cross_v[i]), src_mask, train=train)
        return self._out(x), weights

    def step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False):
        """token [B] at state.pos -> (logits [B, V], encoder attention [B, heads, S], next state).

        Past the cache (pos >= M) or a learned position table the logits are NaN,
        never silently wrong; decoding loops must size the cache for their length.
        """
        pos, size = state.pos, state.keys[0].shape[2]
        x = self.embed(token[:, None], pos[:, None], train=train)
        self_mask = (jnp.arange(size)[None, :] <= pos[:, None])[:, None, None, :]
        src_mask = enc.src_mask[:, None, None, :]
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.layers):
            cache = (state.keys[i], state.values[i])
            x, weights, (k, v) = layer(x, self_mask, (enc.cross_k[i], enc.cross_v[i]), src_mask,
                                       cache=cache, pos=pos, train=train)
            keys.append(k)
            values.append(v)
        logits = self._out(x[:, 0])
        logits = jnp.where((pos < size)[:, None], logits, jnp.nan)
        return logits, weights[:, :, 0], DecodeState(keys=tuple(keys), values=tuple(values), pos=pos + 1)


class TransformerSeq2Seq(nn.Module):
    """Transformer with the model contract (see `s2s_jax.models.rnn`).

    `decode_step` also takes an encoder output of B sentences with tokens and state of B * K rows, K consecutive
    rows per sentence (the record's `shared_encoder`): beam search then does not repeat the encoder keys/values K
    times, and the K beams' queries attend over them as one [K, S] product per sentence and head.
    """

    cfg: ModelConfig

    def setup(self) -> None:
        self.encoder = TransformerEncoder(self.cfg, self.cfg.src_vocab_size)
        self.decoder = TransformerDecoder(self.cfg, self.cfg.tgt_vocab_size)

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        memory, mask = self.encoder.encode(src, src_lengths, train=train)
        cross_k, cross_v = self.decoder.cross_kv(memory)
        return EncoderOutput(cross_k=cross_k, cross_v=cross_v, src_mask=mask)

    def decode(self, enc: EncoderOutput, tgt_in: jax.Array, *, train: bool = False, return_attention: bool = False):
        """Teacher-forced logits [B, T, V]; with return_attention also the last layer's weights [B, heads, T, S]."""
        logits, weights = self.decoder.decode(enc, tgt_in, train=train)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """Empty caches for up to `max_decode_len` steps (default cfg.max_len)."""
        c = self.cfg
        size = max_decode_len or c.max_len
        batch = enc.src_mask.shape[0]
        shape = (batch, c.n_heads, size, c.hid_dim // c.n_heads)
        empty = tuple(jnp.zeros(shape, enc.cross_k[0].dtype) for _ in range(c.n_layers))
        return DecodeState(keys=empty, values=empty, pos=jnp.zeros((batch,), jnp.int32))

    def reorder_decode_state(self, state: DecodeState, rows: jax.Array) -> DecodeState:
        """Beam search's reorder: row i continues the hypothesis in row rows[i] ([B]).

        Only the cache prefix written so far is gathered (`reorder_prefix`): positions past
        every row's pos are never attended before being written, and gathering whole
        caches (layers x 2 x rows x M x hid_dim floats a step) was 40% of a batch-64
        beam search on the Multi30k model.
        """
        used = jnp.max(state.pos)
        return DecodeState(keys=tuple(reorder_prefix(k, rows, used) for k in state.keys),
                           values=tuple(reorder_prefix(v, rows, used) for v in state.values), pos=state.pos[rows])

    def decode_step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False,
                    return_attention: bool = False):
        """One step: token [B] -> (logits [B, V], state), plus attention [B, heads, S] if return_attention."""
        logits, weights, state = self.decoder.step(enc, token, state, train=train)
        return (logits, state, weights) if return_attention else (logits, state)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(src, src_lengths, train=train), tgt_in, train=train)


def _target_limit(cfg: ModelConfig) -> int | None:
    """Learned positions have max_len rows; sinusoidal ones none (the KV cache is sized per decoding call)."""
    return cfg.max_len if cfg.positions == "learned" else None


FAMILY = Family(
    name="transformer", module=TransformerSeq2Seq, torch_model="torch_ref.models.transformer:TransformerSeq2Seq",
    torch_table="torch_ref.models.transformer:param_table", attention=True, target_limit=_target_limit,
    shared_encoder=True, reorders_state=True, state_holds_max_len=True, cache_state=True,
    export_note="KV-cache buffers written in place by the runtime are the ONNX state; cross-attention K/V precomputed",
)
