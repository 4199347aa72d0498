"""The marian family: Hugging Face's MarianMTModel (OPUS-MT), which is fairseq's transformer, as one class.

What makes it differ from the `transformer` family, all config options so that fairseq
transformer checkpoints load here too (s2s_jax/importers):
- positions: HF Marian's sinusoid table (`positions="marian"`), fairseq's (`"fairseq"`,
  counted from pad_id + 1), a learned table, or Vaswani's interleaved sinusoids; every
  table has cfg.max_len rows, computed in numpy exactly as the origin computes it;
- token embeddings times sqrt(hid_dim) when `scale_embedding`, one table for encoder and
  decoder when `share_embeddings` (HF `model.shared`), the output projection tied to the
  decoder's table when `tie_embeddings` (else a bias-free `lm_head`);
- `final_logits_bias` [1, V] added to the logits. Hugging Face keeps it as a buffer that
  training never changes; here it is a parameter under `stop_gradient`, so fine-tuning
  leaves it as it is too, and the fairseq import sets it to zeros (fairseq has none);
- post-LN layers by default (`pre_ln=True` adds the final norms of fairseq's
  --encoder-normalize-before, HF MBart's `layer_norm`), the feed-forward activation of
  `activation` (OPUS-MT: swish), separate attention / activation dropout rates.
The layers are `s2s_jax.layers.transformer`'s (bias-free init, zero biases); names map to
Hugging Face's in torch_ref/models/marian.py's table.

Decoding is the transformer family's: `encode` precomputes each decoder layer's cross
keys/values, the decode state is a fixed KV cache of max_decode_len (default max_len)
positions, `decode_step` takes B sentences' encoder output for B * K beam rows.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.positions import check_length, fairseq_table, marian_table, sinusoidal
from s2s_jax.layers.transformer import DecoderLayer, EncoderLayer, layer_norm
from s2s_jax.models.family import Family
from s2s_jax.models.transformer import DecodeState, EncoderOutput, reorder_prefix


def position_table(cfg: ModelConfig) -> np.ndarray | None:
    """The fixed position table [max_len, hid_dim] of `cfg.positions` (None: learned, or computed per position)."""
    if cfg.positions == "marian":
        return marian_table(cfg.max_len, cfg.hid_dim)
    if cfg.positions == "fairseq":
        return fairseq_table(cfg.max_len, cfg.hid_dim, cfg.pad_id)
    return None


def _layer_args(cfg: ModelConfig) -> dict:
    return dict(hid_dim=cfg.hid_dim, n_heads=cfg.n_heads, ff_dim=cfg.ff_dim, dropout=cfg.dropout, pre_ln=cfg.pre_ln,
                torch_bias=False, activation=cfg.activation, attention_dropout=cfg.attention_dropout,
                activation_dropout=cfg.activation_dropout)


class MarianSeq2Seq(nn.Module):
    """Encoder-decoder with the model contract; param names: `shared` (or `encoder_embed` / `decoder_embed`),
    `encoder_pos` / `decoder_pos` (learned), `encoder_layers_i`, `decoder_layers_i`, `encoder_norm` /
    `decoder_norm` (pre-LN), `lm_head` (untied), `final_logits_bias`."""

    cfg: ModelConfig

    def setup(self) -> None:
        c = self.cfg
        init = nn.initializers.normal(c.hid_dim**-0.5)
        if c.share_embeddings:
            self.shared = nn.Embed(c.src_vocab_size, c.hid_dim, embedding_init=init)
        else:
            self.encoder_embed = nn.Embed(c.src_vocab_size, c.hid_dim, embedding_init=init)
            self.decoder_embed = nn.Embed(c.tgt_vocab_size, c.hid_dim, embedding_init=init)
        if c.positions == "learned":
            self.encoder_pos = nn.Embed(c.max_len, c.hid_dim, embedding_init=init)
            self.decoder_pos = nn.Embed(c.max_len, c.hid_dim, embedding_init=init)
        self.encoder_layers = [EncoderLayer(**_layer_args(c)) for _ in range(c.n_layers)]
        self.decoder_layers = [DecoderLayer(**_layer_args(c)) for _ in range(c.n_layers)]
        if c.pre_ln:
            self.encoder_norm = layer_norm()
            self.decoder_norm = layer_norm()
        if not c.tie_embeddings:
            self.lm_head = nn.Dense(c.tgt_vocab_size, use_bias=False, kernel_init=nn.initializers.xavier_uniform())
        self.final_logits_bias = self.param("final_logits_bias", nn.initializers.zeros, (1, c.tgt_vocab_size))
        self.drop = Dropout(c.dropout)
        table = position_table(c)
        self._table = None if table is None else jnp.asarray(table)

    # ---- pieces ----------------------------------------------------------------------------------------------
    def _tokens(self, side: str) -> nn.Embed:
        return self.shared if self.cfg.share_embeddings else getattr(self, f"{side}_embed")

    def _embed(self, side: str, tokens: jax.Array, positions: jax.Array, *, train: bool) -> jax.Array:
        """tokens and positions [B, T] -> dropout(token embedding * scale + position) [B, T, H]."""
        c = self.cfg
        x = self._tokens(side)(tokens) * (math.sqrt(c.hid_dim) if c.scale_embedding else 1.0)
        if c.positions == "learned":
            pos = getattr(self, f"{side}_pos")(positions)
        elif self._table is not None:
            pos = jnp.take(self._table, positions, axis=0)
        else:
            pos = sinusoidal(positions, c.hid_dim)
        return self.drop(x + pos.astype(x.dtype), deterministic=not train)  # fixed tables are float32: keep bf16

    def _check(self, length: int, what: str) -> None:
        if self.cfg.positions != "sinusoidal":
            check_length(length, self.cfg.max_len, what)

    def _logits(self, x: jax.Array) -> jax.Array:
        if self.cfg.pre_ln:
            x = self.decoder_norm(x)
        logits = self._tokens("decoder").attend(x) if self.cfg.tie_embeddings else self.lm_head(x)
        return logits + jax.lax.stop_gradient(self.final_logits_bias[0])

    # ---- the contract --------------------------------------------------------------------------------------
    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        """src [B, S] -> each decoder layer's cross-attention keys/values [B, heads, S, head_dim] and the mask."""
        self._check(src.shape[1], "source")
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        x = self._embed("encoder", src, jnp.arange(src.shape[1])[None], train=train)
        for layer in self.encoder_layers:
            x = layer(x, mask[:, None, None, :], train=train)
        if self.cfg.pre_ln:
            x = self.encoder_norm(x)
        kvs = [layer.cross_kv(x) for layer in self.decoder_layers]
        return EncoderOutput(cross_k=tuple(k for k, _ in kvs), cross_v=tuple(v for _, v in kvs), src_mask=mask)

    def decode(self, enc: EncoderOutput, tgt_in: jax.Array, *, train: bool = False, return_attention: bool = False):
        """Teacher-forced logits [B, T, V]; with return_attention also the last layer's weights [B, heads, T, S]."""
        t = tgt_in.shape[1]
        self._check(t, "target")
        x = self._embed("decoder", tgt_in, jnp.arange(t)[None], train=train)
        causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
        weights = None
        for i, layer in enumerate(self.decoder_layers):
            x, weights, _ = layer(x, causal, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                  train=train)
        logits = self._logits(x)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """Empty self-attention caches for up to `max_decode_len` steps (default cfg.max_len)."""
        c = self.cfg
        batch = enc.src_mask.shape[0]
        shape = (batch, c.n_heads, max_decode_len or c.max_len, c.hid_dim // c.n_heads)
        empty = tuple(jnp.zeros(shape, enc.cross_k[0].dtype) for _ in range(c.n_layers))
        return DecodeState(keys=empty, values=empty, pos=jnp.zeros((batch,), jnp.int32))

    def reorder_decode_state(self, state: DecodeState, rows: jax.Array) -> DecodeState:
        """Beam search's reorder of the cache prefix written so far (see `models.transformer.reorder_prefix`)."""
        used = jnp.max(state.pos)
        return DecodeState(keys=tuple(reorder_prefix(k, rows, used) for k in state.keys),
                           values=tuple(reorder_prefix(v, rows, used) for v in state.values), pos=state.pos[rows])

    def decode_step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False,
                    return_attention: bool = False):
        """token [B] at state.pos -> (logits [B, V], state), plus attention [B, heads, S] if return_attention.
        Past the cache (or the position table) the logits are NaN, never silently wrong."""
        pos, size = state.pos, state.keys[0].shape[2]
        x = self._embed("decoder", token[:, None], pos[:, None], train=train)
        self_mask = (jnp.arange(size)[None, :] <= pos[:, None])[:, None, None, :]
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.decoder_layers):
            x, weights, (k, v) = layer(x, self_mask, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]), pos=pos, train=train)
            keys.append(k)
            values.append(v)
        logits = jnp.where((pos < size)[:, None], self._logits(x[:, 0]), jnp.nan)
        state = DecodeState(keys=tuple(keys), values=tuple(values), pos=pos + 1)
        return (logits, state, weights[:, :, 0]) if return_attention else (logits, state)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(src, src_lengths, train=train), tgt_in, train=train)


def _target_limit(cfg: ModelConfig) -> int | None:
    """Position tables have max_len rows; Vaswani's sinusoids are computed per position (no limit)."""
    return None if cfg.positions == "sinusoidal" else cfg.max_len


FAMILY = Family(
    name="marian", module=MarianSeq2Seq, torch_model="torch_ref.models.marian:MarianMTModel",
    torch_table="torch_ref.models.marian:param_table", attention=True, target_limit=_target_limit,
    shared_encoder=True, reorders_state=True, state_holds_max_len=True, cache_state=True,
    export_note="as the transformer family: in-place KV caches are the ONNX state; cross K/V precomputed",
)
