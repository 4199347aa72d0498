"""The convolutional family: ConvS2S (Gehring et al. 2017), two styles under one class.

`conv_style="bentrevett"` is seed 001 / bentrevett tutorial 5: token + learned
position embeddings, `emb2hid`, conv blocks (Conv1d hid -> 2*hid, GLU, residual
x sqrt(0.5)), `hid2emb`; the encoder returns (conved, combined = (conved +
embedded) * sqrt(0.5)). The decoder pads each conv input on the left with k-1
positions (the value `pad_id`, exactly as the seed; `pad_fill="zero"` for
zeros), attends in every layer with one `attn_hid2emb`/`attn_emb2hid` pair
shared by all layers (energy against encoder conved, weights applied to
combined), and ends with `hid2emb` and `fc_out`.

`conv_style="fconv"` is the paper / fairseq `fconv`: per-layer attention
projections, attended vectors scaled by sqrt(source length) (m * sqrt(1/m)),
residuals taken before dropout, encoder output gradients scaled by
1 / (2 * attention layers), the paper's initialization; with `weight_norm`
every linear and convolution is weight-normalized.

Padding: the seed neither masks the source in attention nor keeps padding out
of the encoder's 'same'-padded convolutions, so a row's outputs would depend
on how much padding its batch has. Here padded source positions are masked
out of the attention softmax and the encoder zeroes each conv input at
positions >= length (what fairseq does), which makes the conv at a row's last
real tokens see zeros, exactly like the conv's own zero padding on an unpadded
row. Full-length rows compute exactly what the seed computes.

Incremental decoding keeps, per layer, the last k-1 conv inputs (fairseq's
LinearizedConvolution buffer), so a step costs one position whatever its index.
"""

from __future__ import annotations

import math

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp

from s2s_jax.config import ModelConfig
from s2s_jax.layers.conv import Conv1D, Linear, glu, grad_multiply
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import uniform
from s2s_jax.layers.positions import check_length
from s2s_jax.models.family import Family, max_len_limit

SCALE = math.sqrt(0.5)
NEG = -1e10  # masked attention energy (exp underflows to exactly 0, as -inf would, without NaN rows)


@flax.struct.dataclass
class EncoderOutput:
    """conved [B, S, E] (attention keys), combined [B, S, E] (attention values), src_mask [B, S]."""

    conved: jax.Array
    combined: jax.Array
    src_mask: jax.Array


@flax.struct.dataclass
class DecodeState:
    """buffers: per layer the last k-1 conv inputs [B, k-1, H], oldest first; pos [B]: next position."""

    buffers: tuple[jax.Array, ...]
    pos: jax.Array


class _Inits:
    """Initializers: torch defaults (bentrevett) or the paper's (fconv, fairseq's normal draws, zero biases)."""

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self.fconv = cfg.conv_style == "fconv"

    def embed(self, zero_row: int | None = None):
        if not self.fconv:
            return jax.nn.initializers.normal(1.0)

        def init(key, shape, dtype=jnp.float32):
            table = 0.1 * jax.random.normal(key, shape, dtype)
            return table if zero_row is None else table.at[zero_row].set(0.0)

        return init

    def linear(self, fan_in: int, dropout: float = 0.0) -> dict:
        if not self.fconv:
            bound = 1.0 / math.sqrt(fan_in)
            return dict(kernel_init=uniform(bound), bias_init=uniform(bound))
        std = math.sqrt((1.0 - dropout) / fan_in)
        return dict(kernel_init=jax.nn.initializers.normal(std), bias_init=jax.nn.initializers.zeros)

    def conv(self, in_features: int) -> dict:
        k = self.cfg.kernel_size
        if not self.fconv:
            bound = 1.0 / math.sqrt(in_features * k)
            return dict(kernel_init=uniform(bound), bias_init=uniform(bound))
        std = math.sqrt(4.0 * (1.0 - self.cfg.dropout) / (k * in_features))
        return dict(kernel_init=jax.nn.initializers.normal(std), bias_init=jax.nn.initializers.zeros)


class ConvEncoder(nn.Module):
    cfg: ModelConfig

    def setup(self) -> None:
        c, init = self.cfg, _Inits(self.cfg)
        wn, p = c.weight_norm, c.dropout
        self.tok_embedding = nn.Embed(c.src_vocab_size, c.emb_dim, embedding_init=init.embed(c.pad_id))
        self.pos_embedding = nn.Embed(c.max_len, c.emb_dim, embedding_init=init.embed())
        self.emb2hid = Linear(c.hid_dim, wn, **init.linear(c.emb_dim, p))
        self.hid2emb = Linear(c.emb_dim, wn, **init.linear(c.hid_dim))
        self.convs = [Conv1D(c.hid_dim, 2 * c.hid_dim, c.kernel_size, wn, **init.conv(c.hid_dim))
                      for _ in range(c.n_layers)]
        self.drop = Dropout(c.dropout)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        c = self.cfg
        check_length(src.shape[1], c.max_len, "source")
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        embedded = self.tok_embedding(src) + self.pos_embedding(jnp.arange(src.shape[1]))[None]
        embedded = self.drop(embedded, deterministic=not train)
        x = self.emb2hid(embedded)
        half = (c.kernel_size - 1) // 2
        for conv in self.convs:
            x = jnp.where(mask[..., None], x, 0.0)  # padding invariance, see the module docstring
            padded = jnp.pad(self.drop(x, deterministic=not train), ((0, 0), (half, half), (0, 0)))
            x = (glu(conv(padded)) + x) * SCALE
        conved = self.hid2emb(x)
        if c.conv_style == "fconv":
            conved = jnp.where(mask[..., None], conved, 0.0)
            conved = grad_multiply(conved, 1.0 / (2.0 * c.n_layers))
        combined = (conved + embedded) * SCALE
        return EncoderOutput(conved=conved, combined=combined, src_mask=mask)


class ConvDecoder(nn.Module):
    cfg: ModelConfig

    def setup(self) -> None:
        c, init = self.cfg, _Inits(self.cfg)
        wn, p = c.weight_norm, c.dropout
        self.tok_embedding = nn.Embed(c.tgt_vocab_size, c.emb_dim, embedding_init=init.embed(c.pad_id))
        self.pos_embedding = nn.Embed(c.max_len, c.emb_dim, embedding_init=init.embed())
        self.emb2hid = Linear(c.hid_dim, wn, **init.linear(c.emb_dim, p))
        self.hid2emb = Linear(c.emb_dim, wn, **init.linear(c.hid_dim))
        if c.conv_style == "fconv":  # one attention per layer (Gehring et al. 2017, section 3.3)
            self.attn_hid2emb = [Linear(c.emb_dim, wn, **init.linear(c.hid_dim)) for _ in range(c.n_layers)]
            self.attn_emb2hid = [Linear(c.hid_dim, wn, **init.linear(c.emb_dim)) for _ in range(c.n_layers)]
        else:  # the seed shares one pair across layers
            self.attn_hid2emb = Linear(c.emb_dim, wn, **init.linear(c.hid_dim))
            self.attn_emb2hid = Linear(c.hid_dim, wn, **init.linear(c.emb_dim))
        self.fc_out = Linear(c.tgt_vocab_size, wn, **init.linear(c.emb_dim, p))
        self.convs = [Conv1D(c.hid_dim, 2 * c.hid_dim, c.kernel_size, wn, **init.conv(c.hid_dim))
                      for _ in range(c.n_layers)]
        self.drop = Dropout(c.dropout)

    @property
    def fill(self) -> float:
        """The causal left padding's value: the seed fills with the pad id (a float in every channel)."""
        return float(self.cfg.pad_id) if self.cfg.pad_fill == "pad_id" else 0.0

    def _attend(self, i: int, conved: jax.Array, embedded: jax.Array, enc: EncoderOutput):
        """Multi-step attention of layer i: conved [B, T, H] (GLU output), embedded [B, T, E] -> (weights, conved).

        `enc` may hold B / K sentences for the B rows, K consecutive rows each (beam search's shared encoder
        output): their queries then attend as K * T positions of their sentence.
        """
        fconv = self.cfg.conv_style == "fconv"
        hid2emb = self.attn_hid2emb[i] if fconv else self.attn_hid2emb
        emb2hid = self.attn_emb2hid[i] if fconv else self.attn_emb2hid
        query = (hid2emb(conved) + embedded) * SCALE
        rows, t, _ = query.shape
        query = query.reshape(enc.conved.shape[0], -1, query.shape[-1])
        energy = jnp.einsum("bte,bse->bts", query, enc.conved)
        weights = jax.nn.softmax(jnp.where(enc.src_mask[:, None, :], energy, NEG), axis=-1)
        attended = jnp.einsum("bts,bse->bte", weights, enc.combined)
        if fconv:  # the paper's m * sqrt(1/m) with m each row's true source length
            attended = attended * jnp.sqrt(jnp.sum(enc.src_mask, axis=1, dtype=attended.dtype))[:, None, None]
        weights, attended = weights.reshape(rows, t, -1), attended.reshape(rows, t, -1)
        return weights, (conved + emb2hid(attended)) * SCALE

    def _residual(self, x: jax.Array, x_in: jax.Array, conved: jax.Array) -> jax.Array:
        """The seed adds the dropped conv input back; fairseq the input before dropout."""
        return (conved + (x if self.cfg.conv_style == "fconv" else x_in)) * SCALE

    def _embed(self, tokens: jax.Array, positions: jax.Array, train: bool) -> jax.Array:
        return self.drop(self.tok_embedding(tokens) + self.pos_embedding(positions), deterministic=not train)

    def _logits(self, x: jax.Array, train: bool) -> jax.Array:
        return self.fc_out(self.drop(self.hid2emb(x), deterministic=not train))

    def __call__(self, enc: EncoderOutput, tgt: jax.Array, *, train: bool = False):
        """Teacher-forced: tgt [B, T] -> (logits [B, T, V], last layer's attention [B, T, S])."""
        c = self.cfg
        check_length(tgt.shape[1], c.max_len, "target")
        embedded = self._embed(tgt, jnp.arange(tgt.shape[1])[None], train)
        x = self.emb2hid(embedded)
        fill = jnp.full((x.shape[0], c.kernel_size - 1, c.hid_dim), self.fill, x.dtype)
        weights = None
        for i, conv in enumerate(self.convs):
            x_in = self.drop(x, deterministic=not train)
            conved = glu(conv(jnp.concatenate([fill, x_in], axis=1)))
            weights, conved = self._attend(i, conved, embedded, enc)
            x = self._residual(x, x_in, conved)
        return self._logits(x, train), weights

    def init_state(self, enc: EncoderOutput) -> DecodeState:
        c, batch = self.cfg, enc.conved.shape[0]
        buffer = jnp.full((batch, c.kernel_size - 1, c.hid_dim), self.fill, enc.conved.dtype)
        return DecodeState(buffers=(buffer,) * c.n_layers, pos=jnp.zeros((batch,), jnp.int32))

    def step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False):
        """token [B] at position state.pos -> (logits [B, V], attention [B, S], next state).

        Past the learned position table (pos >= max_len) the logits are NaN, never
        silently wrong; decoding loops must stop at max_len.
        """
        embedded = self._embed(token, state.pos, train)[:, None]
        x = self.emb2hid(embedded)
        buffers, weights = [], None
        for i, conv in enumerate(self.convs):
            x_in = self.drop(x, deterministic=not train)
            window = jnp.concatenate([state.buffers[i], x_in], axis=1)
            conved = glu(conv.step(window))[:, None]
            weights, conved = self._attend(i, conved, embedded, enc)
            x = self._residual(x, x_in, conved)
            buffers.append(window[:, 1:])
        logits = self._logits(x[:, 0], train)
        logits = jnp.where((state.pos < self.cfg.max_len)[:, None], logits, jnp.nan)
        return logits, weights[:, 0], DecodeState(buffers=tuple(buffers), pos=state.pos + 1)


class ConvS2S(nn.Module):
    """ConvS2S with the model contract (see `s2s_jax.models.rnn`).

    `decode_step` also takes an encoder output of B sentences with tokens and state of B * K rows, K consecutive
    rows per sentence (the record's `shared_encoder`), so beam search does not repeat the encoder outputs per beam.
    """

    cfg: ModelConfig

    def setup(self) -> None:
        self.encoder = ConvEncoder(self.cfg)
        self.decoder = ConvDecoder(self.cfg)

    def encode(self, src: jax.Array, src_lengths: jax.Array, *, train: bool = False) -> EncoderOutput:
        return self.encoder(src, src_lengths, train=train)

    def decode(self, enc: EncoderOutput, tgt_in: jax.Array, *, train: bool = False, return_attention: bool = False):
        """Teacher-forced logits [B, T, V]; with return_attention also the last layer's weights [B, T, S]."""
        logits, weights = self.decoder(enc, tgt_in, train=train)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        return self.decoder.init_state(enc)

    def decode_step(self, enc: EncoderOutput, token: jax.Array, state: DecodeState, *, train: bool = False,
                    return_attention: bool = False):
        """One step: token [B] -> (logits [B, V], state), plus attention [B, S] if return_attention."""
        logits, weights, state = self.decoder.step(enc, token, state, train=train)
        return (logits, state, weights) if return_attention else (logits, state)

    def __call__(self, src: jax.Array, src_lengths: jax.Array, tgt_in: jax.Array, *, train: bool = False) -> jax.Array:
        return self.decode(self.encode(src, src_lengths, train=train), tgt_in, train=train)


FAMILY = Family(
    name="convs2s", module=ConvS2S, torch_model="torch_ref.models.convs2s:ConvS2S",
    torch_table="torch_ref.models.convs2s:param_table", attention=True, target_limit=max_len_limit,
    shared_encoder=True, state_holds_max_len=True,
    export_note="decoder conv buffers and position are the state; learned positions limit source and steps",
)
