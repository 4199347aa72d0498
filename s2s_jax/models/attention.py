"""The RNN + attention family: Bahdanau (bentrevett, d2l, seed 002), the PyTorch
tutorial's location attention (seed 000), and Luong dot/general/concat.

One class; `cfg.origin` picks the decoder layout (one row of `LAYOUTS` each) and
`cfg.attention` the score. Per decoder step, with query = previous top hidden state:

- bentrevett-attention: bi-GRU encoder, s0 = tanh(fc [fwd; bwd]); score v_fc tanh(attn_fc [s; h]);
  RNN input [emb; ctx]; output fc_out [s; ctx; emb].
- d2l-bahdanau: GRU stack; score w_v tanh(W_q s + W_k h); RNN input [ctx; emb]; output dense s.
- seed002-attention: GRU; score v_a tanh(W_a [h; s]); RNN input [emb; ctx]; output out s.
- pytorch-tutorial: GRU; weights softmax(attn [emb; s]) over max_len positions;
  RNN input relu(attn_combine [emb; ctx]); output out s.
- "" (Luong): a stack of any cell; score dot / general / concat with the new state s_t;
  RNN input [emb; h~_{t-1}] (input feeding) or emb; output out h~, h~ = tanh(W_c [ctx; s_t]).
(s: decoder state, h: encoder outputs, ctx: their weighted sum.)

Luong attends with the *current* state s_t (after the RNN step); with input feeding
h~_{t-1} is part of the next input. Without it the whole teacher-forced decode is one
scanned RNN plus one batched attention.

Keys are projected once per sentence (`EncoderOutput.keys`), and the embedding part
of the decoder's first-layer input projection is one matmul for all steps; only the
context part is projected inside the scan.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.layers import cells
from s2s_jax.layers.attention import AdditiveAttention, LocationAttention, LuongAttention
from s2s_jax.layers.dense import Dense
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import linear_kernel, uniform
from s2s_jax.layers.rnn import RNNStack, length_mask, reverse_within_lengths
from s2s_jax.layers.teacher_forcing import decode_with_draws
from s2s_jax.models.family import Family


@dataclasses.dataclass(frozen=True)
class Layout:
    """What differs between the origins (see the module table)."""

    attentions: tuple[str, ...]  # valid cfg.attention values
    scorer: str  # AdditiveAttention layout, "location" or "luong"
    bidirectional: bool = False  # bi-GRU encoder and a tanh(fc) bridge to the decoder state
    ctx_first: bool = False  # decoder RNN input [ctx; emb] instead of [emb; ctx]
    out_extra: bool = False  # output layer reads [s; ctx; emb]
    src_dropout: bool = True  # dropout on source embeddings (when cfg.embed_dropout)
    attn_dropout: bool = False  # dropout on the attention weights (d2l)
    gru_only: bool = True  # the origin is a GRU
    one_layer: bool = True  # the origin has one layer
    one_width: bool = False  # the origin embeds with hid_dim (emb_dim must equal hid_dim)


LAYOUTS = {
    "bentrevett-attention": Layout(("additive",), "concat_qk", bidirectional=True, out_extra=True),
    "d2l-bahdanau": Layout(("additive",), "separate", ctx_first=True, attn_dropout=True, one_layer=False),
    "seed002-attention": Layout(("additive",), "concat_kq", one_width=True),
    "pytorch-tutorial": Layout(("location",), "location", src_dropout=False, one_width=True),
    "": Layout(("dot", "general", "concat"), "luong", gru_only=False, one_layer=False),
}


def layout_of(cfg: ModelConfig) -> Layout:
    """The layout row of `cfg.origin`, after checking that cfg fits it (ConfigError naming the field)."""
    if cfg.origin not in LAYOUTS:
        raise ConfigError(f"origin={cfg.origin!r} is not an attention-family origin; valid: {sorted(LAYOUTS)}")
    lay = LAYOUTS[cfg.origin]
    who = f"origin={cfg.origin!r}" if cfg.origin else "Luong attention (origin='')"
    if cfg.attention not in lay.attentions:
        raise ConfigError(f"attention={cfg.attention!r} does not fit {who}; valid: {lay.attentions}")
    if cfg.bidirectional != lay.bidirectional:
        raise ConfigError(f"bidirectional={cfg.bidirectional} does not fit {who}; it needs {lay.bidirectional}")
    if lay.gru_only and cfg.cell != "gru":
        raise ConfigError(f"cell={cfg.cell!r} does not fit {who}; it is a GRU model")
    if lay.one_layer and cfg.n_layers != 1:
        raise ConfigError(f"n_layers={cfg.n_layers} does not fit {who}; it has one layer")
    if lay.one_width and cfg.emb_dim != cfg.hid_dim:
        raise ConfigError(f"emb_dim={cfg.emb_dim} must equal hid_dim={cfg.hid_dim} for {who}")
    if cfg.input_feeding and lay.scorer != "luong":
        raise ConfigError(f"input_feeding=True is Luong's; it does not fit {who}")
    return lay


@flax.struct.dataclass
class EncoderOutput:
    """Batch-first: outputs [B, S, D] (the values; for location attention zero-padded to
    S = max_len), keys [B, S, F] (the attention's projection of outputs, once per sentence),
    final (the decoder's initial carry [B, L, H], a pair for LSTM), src_mask [B, S]."""

    outputs: jax.Array
    keys: jax.Array
    final: Any
    src_mask: jax.Array


@flax.struct.dataclass
class DecodeState:
    """carry [B, L, H] (pair for LSTM); attention [B, S], the last step's weights;
    feed [B, H], Luong's previous attentional state h~ (width 0 without input feeding)."""

    carry: Any
    attention: jax.Array
    feed: jax.Array


def _dense(features: int, fan_in: int, use_bias: bool = True) -> nn.Dense:
    return Dense(features, use_bias=use_bias, kernel_init=linear_kernel, bias_init=uniform(1.0 / math.sqrt(fan_in)))


class AttentionSeq2Seq(nn.Module):
    """RNN encoder-decoder with attention; the model contract of `s2s_jax.models.rnn`, plus
    `decode(..., return_attention=True)` -> (logits, weights [B, T, S]) and the step's weights
    in `DecodeState.attention`. `decode_step` also takes the encoder output of B sentences with
    tokens and state of B * K rows (the record's `shared_encoder`, see `s2s_jax.decoding.beam`)."""

    cfg: ModelConfig

    def setup(self) -> None:
        c = self.cfg
        lay = self.layout = layout_of(c)
        e, h = c.emb_dim, c.hid_dim
        mem = 2 * h if lay.bidirectional else h
        self.src_embed = nn.Embed(c.src_vocab_size, e, embedding_init=jax.nn.initializers.normal(1.0))
        self.tgt_embed = nn.Embed(c.tgt_vocab_size, e, embedding_init=jax.nn.initializers.normal(1.0))
        self.encoder = RNNStack(c.cell, e, h, c.n_layers, lay.bidirectional, c.dropout, c.reset_after)
        if lay.bidirectional:
            self.bridge = _dense(h, mem)
        if lay.scorer == "location":
            self.attention = LocationAttention(e + h, c.max_len)
            self.combine = _dense(h, e + mem)  # attn_combine
            dec_in = h
        elif lay.scorer == "luong":
            if c.attention == "concat":
                self.attention = AdditiveAttention(h, h, h, "concat_qk", use_bias=False)
            else:
                self.attention = LuongAttention(c.attention, h)
            self.combine = _dense(h, 2 * h, use_bias=False)  # W_c
            dec_in = e + (h if c.input_feeding else 0)
        else:
            drop = c.dropout if lay.attn_dropout else 0.0
            self.attention = AdditiveAttention(h, mem, h, lay.scorer, use_bias=lay.scorer != "separate", dropout=drop)
            dec_in = e + mem
        self.decoder = RNNStack(c.cell, dec_in, h, c.n_layers, False, c.dropout, c.reset_after)
        out_in = h + mem + e if lay.out_extra else h
        self.out = _dense(c.tgt_vocab_size, out_in)
        self.drop = Dropout(c.dropout)

    def _embed(self, table: nn.Embed, ids: jax.Array, use_dropout: bool, train: bool) -> jax.Array:
        emb = table(ids)
        return self.drop(emb, deterministic=not train) if use_dropout and self.cfg.embed_dropout else emb

    # --- encoder -------------------------------------------------------------------------

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        c, lay = self.cfg, self.layout
        width = src.shape[1]
        if lay.scorer == "location" and width > c.max_len:
            raise UserError(
                f"source length {width} exceeds max_len={c.max_len}: location attention (origin "
                f"{c.origin!r}) scores a fixed max_len positions; drop or split longer sentences, "
                f"pad batches to at most {c.max_len}, or build the model with a larger max_len"
            )
        if c.reverse_source:  # Sutskever et al.; encoder outputs (and attention weights) are in reading order
            src = reverse_within_lengths(src, src_lengths)
        emb = self._embed(self.src_embed, src, lay.src_dropout, train)
        outputs, final = self.encoder(emb, src_lengths, train=train)
        mask = length_mask(src_lengths, width)
        if lay.bidirectional:
            # bentrevett: s0 = tanh(fc([forward final; backward final])) of the top layer.
            final = jnp.tanh(self.bridge(jnp.concatenate([final[:, -2], final[:, -1]], axis=-1)))[:, None]
        if lay.scorer == "location":
            # The tutorial writes encoder outputs into zeros(max_length, H).
            outputs = jnp.pad(outputs, ((0, 0), (0, c.max_len - width), (0, 0)))
            mask = jnp.pad(mask, ((0, 0), (0, c.max_len - width)))
            keys = outputs
        else:
            keys = self.attention.keys(outputs)
        return EncoderOutput(outputs=outputs, keys=keys, final=final, src_mask=mask)

    # --- decoder -------------------------------------------------------------------------

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        b, s = enc.src_mask.shape
        feed = self.cfg.hid_dim if self.cfg.input_feeding else 0
        dtype = enc.outputs.dtype
        return DecodeState(carry=enc.final, attention=jnp.zeros((b, s), dtype), feed=jnp.zeros((b, feed), dtype))

    def _input_projection(self, emb: jax.Array) -> jax.Array | None:
        """The embedding's share of the first decoder layer's input projection (all steps in one matmul)."""
        if self.layout.scorer == "location":
            return None
        layer = self.decoder.layers[0]
        w, e = layer.weight_ih, emb.shape[-1]
        w_emb = w[:, w.shape[1] - e :] if self.layout.ctx_first else w[:, :e]
        return emb @ w_emb.T + layer.bias_ih

    def _rnn(self, pre: jax.Array, extra: jax.Array | None, carry: Any, train: bool) -> tuple[jax.Array, Any]:
        """One step of the decoder stack whose first-layer input is [emb; extra] (or [extra; emb]),
        with the embedding part `pre` already projected. Returns (top output, new carry)."""
        c = self.cfg
        layers = self.decoder.layers
        xw = pre
        if extra is not None and extra.shape[-1]:
            w, k = layers[0].weight_ih, extra.shape[-1]
            w_extra = w[:, :k] if self.layout.ctx_first else w[:, w.shape[1] - k :]
            xw = xw + extra @ w_extra.T
        new = []
        x = None
        for i, layer in enumerate(layers):
            old = jax.tree.map(lambda s, i=i: s[:, i], carry)
            if i == 0:
                nxt = cells.step(c.cell, xw, old, layer.weight_hh, layer.bias_hh, c.reset_after)
            else:
                nxt = layer.step(self.drop(x, deterministic=not train), old)
            new.append(nxt)
            x = cells.output(c.cell, nxt)
        return x, jax.tree.map(lambda *s: jnp.stack(s, axis=1), *new)

    def _attend(self, query: jax.Array, enc: EncoderOutput, train: bool) -> tuple[jax.Array, jax.Array]:
        """The attention of queries [R, F] or [B, T, F] over `enc`. With R = K * B rows for enc's B sentences
        (beam search's shared encoder output, K consecutive rows a sentence) the K queries of a sentence attend
        as K positions of it: its keys and values are read once, not K times."""
        sentences, rows = enc.src_mask.shape[0], query.shape[0]
        if query.ndim != 2 or rows == sentences:
            return self.attention(query, enc.keys, enc.outputs, enc.src_mask, train=train)
        ctx, weights = self.attention(query.reshape(sentences, rows // sentences, -1), enc.keys, enc.outputs,
                                      enc.src_mask, train=train)
        return ctx.reshape(rows, -1), weights.reshape(rows, -1)

    def _luong_output(self, enc: EncoderOutput, s: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
        """h~ = tanh(W_c [ctx; s]) for states s [B, H] or [B, T, H]; returns (h~, weights)."""
        ctx, weights = self._attend(s, enc, train)
        return jnp.tanh(self.combine(jnp.concatenate([ctx, s], axis=-1))), weights

    def _step(self, enc: EncoderOutput, emb: jax.Array, pre: jax.Array | None, state: DecodeState,
              train: bool) -> tuple[jax.Array, DecodeState]:
        """One decoder step from the (dropped-out) embedding: (features for `out`, next state)."""
        lay = self.layout
        if lay.scorer == "luong":
            s, carry = self._rnn(pre, state.feed, state.carry, train)
            feat, weights = self._luong_output(enc, s, train)
            feed = feat if self.cfg.input_feeding else state.feed
            return feat, DecodeState(carry=carry, attention=weights, feed=feed)
        query = cells.output(self.cfg.cell, state.carry)[:, -1]  # previous top hidden state
        if lay.scorer == "location":
            ctx, weights = self.attention(emb, query, enc.outputs)
            x = jax.nn.relu(self.combine(jnp.concatenate([emb, ctx], axis=-1)))
            s, carry = self.decoder.step(x, state.carry, train=train)
            return s, DecodeState(carry=carry, attention=weights, feed=state.feed)
        ctx, weights = self._attend(query, enc, train)
        s, carry = self._rnn(pre, ctx, state.carry, train)
        feat = jnp.concatenate([s, ctx, emb], axis=-1) if lay.out_extra else s
        return feat, DecodeState(carry=carry, attention=weights, feed=state.feed)

    def decode(self, enc: EncoderOutput, tgt_in: jax.Array, *, train: bool = False,
               return_attention: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
        """Teacher-forced logits [B, T, V]; with return_attention also the weights [B, T, S]. In training with
        cfg.teacher_forcing < 1 the steps read gold-or-own tokens (layers/teacher_forcing.py)."""
        if train and self.cfg.teacher_forcing < 1.0 and not return_attention:
            return decode_with_draws(self, enc, tgt_in, self.cfg.teacher_forcing, train=train)
        emb = self._embed(self.tgt_embed, tgt_in, True, train)
        state = self.init_decode_state(enc)
        if self.layout.scorer == "luong" and not self.cfg.input_feeding:
            lengths = jnp.full((tgt_in.shape[0],), tgt_in.shape[1], jnp.int32)
            states, _ = self.decoder(emb, lengths, state.carry, train=train)
            feats, weights = self._luong_output(enc, states, train)
        else:
            def body(module, carry, xs, enc):
                feat, carry = module._step(enc, xs[0], xs[1], carry, train)
                return carry, (feat, carry.attention)

            scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False, "dropout": True},
                           in_axes=(1, nn.broadcast), out_axes=1)
            _, (feats, weights) = scan(self, state, (emb, self._input_projection(emb)), enc)
        logits = self.out(feats)
        return (logits, weights) if return_attention else logits

    def decode_step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *,
                    train: bool = False) -> tuple[jax.Array, DecodeState]:
        """One step: token [B] -> (logits [B, V], next state); the step's weights are `state.attention`."""
        emb = self._embed(self.tgt_embed, token, True, train)
        feat, state = self._step(enc, emb, self._input_projection(emb), state, train)
        return self.out(feat), state

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(src, src_lengths, train=train), tgt_in, train=train)


FAMILY = Family(
    name="attention", module=AttentionSeq2Seq, torch_model="torch_ref.models.attention:AttentionSeq2Seq",
    torch_table="torch_ref.models.attention:param_table", attention=True, shared_encoder=True,
    export_note="as rnn; keys precomputed in encode are an encoder tensor, src_mask a bool input",
)
