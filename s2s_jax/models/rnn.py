"""The RNN encoder-decoder family: Sutskever LSTM, Cho GRU, d2l seq2seq, seed 002.

One class covers the four origins; `cfg.context` says how the encoder summary
reaches the decoder:
- `none`: only as the decoder's initial state (bentrevett tutorial 1, seed 002);
- `cho`: the encoder's top final state is the decoder's initial state, is
  concatenated to every decoder input `[emb; context]`, and to the output layer
  input `[emb; hidden; context]` (bentrevett tutorial 2);
- `d2l`: the decoder starts from the encoder's final state (all layers) and
  `[emb; context]` is fed at every step, context = encoder's top final state.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.layers.dense import Dense
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import linear_kernel, uniform
from s2s_jax.layers.rnn import RNNStack, reverse_within_lengths
from s2s_jax.layers.teacher_forcing import decode_with_draws
from s2s_jax.models.family import Family


@flax.struct.dataclass
class EncoderOutput:
    """Batch-first encoder results: outputs [B, S, H], final state [B, L, H] (pair for LSTM),
    context [B, H] (the top layer's final hidden state), src_mask [B, S]."""

    outputs: jax.Array
    final: Any
    context: jax.Array
    src_mask: jax.Array


@flax.struct.dataclass
class DecodeState:
    """The decoder's carry, batch-first: [B, L, H] (a pair (h, c) for LSTM)."""

    carry: Any


class RNNSeq2Seq(nn.Module):
    cfg: ModelConfig

    def setup(self) -> None:
        c = self.cfg
        if c.bidirectional:
            raise ConfigError(
                "the rnn family has unidirectional encoders; bidirectional=True needs an attention preset"
            )
        self.src_embed = nn.Embed(c.src_vocab_size, c.emb_dim, embedding_init=jax.nn.initializers.normal(1.0))
        self.tgt_embed = nn.Embed(c.tgt_vocab_size, c.emb_dim, embedding_init=jax.nn.initializers.normal(1.0))
        dec_in = c.emb_dim + (c.hid_dim if c.context != "none" else 0)
        out_in = c.hid_dim + (c.emb_dim + c.hid_dim if c.context == "cho" else 0)
        self.encoder = RNNStack(c.cell, c.emb_dim, c.hid_dim, c.n_layers, False, c.dropout, c.reset_after)
        self.decoder = RNNStack(c.cell, dec_in, c.hid_dim, c.n_layers, False, c.dropout, c.reset_after)
        bound = 1.0 / out_in**0.5
        self.out = Dense(c.tgt_vocab_size, kernel_init=linear_kernel, bias_init=uniform(bound))
        self.drop = Dropout(c.dropout if c.embed_dropout else 0.0)

    def _embed(self, table: nn.Embed, ids: jax.Array, train: bool) -> jax.Array:
        return self.drop(table(ids), deterministic=not train)

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        if self.cfg.reverse_source:
            src = reverse_within_lengths(src, src_lengths)
        outputs, final = self.encoder(self._embed(self.src_embed, src, train), src_lengths, train=train)
        top = (final[0] if self.cfg.cell == "lstm" else final)[:, -1]
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        return EncoderOutput(outputs=outputs, final=final, context=top, src_mask=mask)

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        if self.cfg.context == "cho":
            # Cho et al.: the decoder starts from the context vector itself.
            return DecodeState(carry=enc.context[:, None, :])
        return DecodeState(carry=enc.final)

    def _logits(self, emb: jax.Array, hidden: jax.Array, context: jax.Array) -> jax.Array:
        if self.cfg.context == "cho":
            hidden = jnp.concatenate([emb, hidden, context], axis=-1)
        return self.out(hidden)

    def decode(self, enc: EncoderOutput, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        """Teacher-forced logits [B, T, V] for the whole target prefix `tgt_in` (in training with
        cfg.teacher_forcing < 1, step by step on gold-or-own tokens: layers/teacher_forcing.py)."""
        if train and self.cfg.teacher_forcing < 1.0:
            return decode_with_draws(self, enc, tgt_in, self.cfg.teacher_forcing, train=train)
        emb = self._embed(self.tgt_embed, tgt_in, train)
        context = jnp.broadcast_to(enc.context[:, None, :], emb.shape[:2] + enc.context.shape[-1:])
        x = jnp.concatenate([emb, context], axis=-1) if self.cfg.context != "none" else emb
        lengths = jnp.full((tgt_in.shape[0],), tgt_in.shape[1], jnp.int32)
        hidden, _ = self.decoder(x, lengths, self.init_decode_state(enc).carry, train=train)
        return self._logits(emb, hidden, context)

    def decode_step(
        self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False
    ) -> tuple[jax.Array, DecodeState]:
        """One step: token [B] -> (logits [B, V], next state)."""
        emb = self._embed(self.tgt_embed, token, train)
        x = jnp.concatenate([emb, enc.context], axis=-1) if self.cfg.context != "none" else emb
        hidden, carry = self.decoder.step(x, state.carry, train=train)
        return self._logits(emb, hidden, enc.context), DecodeState(carry=carry)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(src, src_lengths, train=train), tgt_in, train=train)


FAMILY = Family(
    name="rnn", module=RNNSeq2Seq, torch_model="torch_ref.models.rnn:RNNSeq2Seq",
    torch_table="torch_ref.models.rnn:param_table",
    export_note="recurrent stacks swapped for ONNX RNN/GRU/LSTM with sequence_lens",
)
