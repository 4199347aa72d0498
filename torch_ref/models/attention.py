"""PyTorch mirror of `s2s_jax.models.attention.AttentionSeq2Seq` and its conversion table.

Submodule names follow `cfg.origin`, so `state_dict()` has exactly the keys of the
original code and its checkpoints load with `strict=True`:

| origin               | encoder                 | decoder                                                  |
|----------------------|-------------------------|----------------------------------------------------------|
| bentrevett-attention | embedding, rnn (bi), fc | attention.{attn_fc, v_fc}, embedding, rnn, fc_out        |
| d2l-bahdanau         | embedding, rnn          | attention.{W_k, W_q, w_v}, embedding, rnn, dense         |
| seed002-attention    | embedding, gru          | embedding, attention.{W_a, v_a}, gru, out                |
| pytorch-tutorial     | embedding, gru          | embedding, attn, attn_combine, gru, out                  |
| "" (Luong)           | embedding, rnn          | embedding, attention.{W_a, v_a}, rnn, W_c, out           |

(Luong: `dot` has no attention parameters, `general` only W_a, `concat` W_a and v_a.)

The computation is the Flax model's (same layout rules, `layout_of`), batch-first,
with the same contract methods; keys are projected once in `encode`. `decode` runs
`decode_step` T times, the plain reference loop.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from s2s_jax.config import ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.layers.attention import NEG_INF
from s2s_jax.models.attention import Layout, layout_of
from torch_ref.convert import Rule, embedding, linear, rnn_stack
from torch_ref.layers import State, length_mask, make_rnn, reverse_within_lengths, run_rnn, step_rnn


class Names(NamedTuple):
    """Origin names: recurrent stacks, output layer, attention projection and score vector, combine layer."""

    rnn: str
    out: str
    proj: str = ""
    v: str = ""
    combine: str = ""


NAMES = {
    "bentrevett-attention": Names("rnn", "fc_out", "attn_fc", "v_fc"),
    "d2l-bahdanau": Names("rnn", "dense", "", "w_v"),
    "seed002-attention": Names("gru", "out", "W_a", "v_a"),
    "pytorch-tutorial": Names("gru", "out", "attn", "", "attn_combine"),
    "": Names("rnn", "out", "W_a", "v_a", "W_c"),
}


class EncoderOutput(NamedTuple):
    """As in Flax: outputs [B, S, D], keys [B, S, F], final [B, L, H] (pair for LSTM), src_mask [B, S]."""

    outputs: torch.Tensor
    keys: torch.Tensor
    final: State
    src_mask: torch.Tensor


class DecodeState(NamedTuple):
    """carry [B, L, H] (pair for LSTM), attention [B, S] (the last step's weights), feed [B, H or 0]."""

    carry: State
    attention: torch.Tensor
    feed: torch.Tensor


def _softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.softmax(scores.masked_fill(~mask, NEG_INF), dim=-1)


class AdditiveAttention(nn.Module):
    """v^T tanh(W_q q + W_k k + b) with the origin's parameter layout (see s2s_jax.layers.attention)."""

    def __init__(self, query_dim: int, key_dim: int, features: int, layout: str, bias: bool = True,
                 dropout: float = 0.0, proj: str = "attn_fc", v: str = "v_fc") -> None:
        super().__init__()
        self.layout, self.query_dim, self.key_dim = layout, query_dim, key_dim
        self.proj_name, self.v_name = proj, v
        if layout == "separate":  # d2l's order: W_k, W_q, w_v
            self.W_k = nn.Linear(key_dim, features, bias=False)
            self.W_q = nn.Linear(query_dim, features, bias=False)
        else:
            self.add_module(proj, nn.Linear(query_dim + key_dim, features, bias=bias))
        self.add_module(v, nn.Linear(features, 1, bias=False))
        self.dropout = nn.Dropout(dropout)

    def _split(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(query columns, key columns) of the concatenated weight [F, Dq + Dk]."""
        w = getattr(self, self.proj_name).weight
        if self.layout == "concat_qk":
            return w[:, : self.query_dim], w[:, self.query_dim :]
        return w[:, self.key_dim :], w[:, : self.key_dim]

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        if self.layout == "separate":
            return self.W_k(memory)
        keys = memory @ self._split()[1].T
        bias = getattr(self, self.proj_name).bias
        return keys if bias is None else keys + bias

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.W_q(query) if self.layout == "separate" else query @ self._split()[0].T
        scores = getattr(self, self.v_name)(torch.tanh(q[:, None, :] + keys)).squeeze(-1)
        weights = _softmax(scores, mask)
        return torch.bmm(self.dropout(weights)[:, None, :], values)[:, 0], weights


class LuongAttention(nn.Module):
    """Luong `dot` (no parameters) or `general` (W_a applied to the keys once)."""

    def __init__(self, kind: str, hidden: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "general":
            self.W_a = nn.Linear(hidden, hidden, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        return self.W_a(memory) if self.kind == "general" else memory

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = _softmax(torch.bmm(keys, query[:, :, None])[..., 0], mask)
        return torch.bmm(weights[:, None, :], values)[:, 0], weights


class _Part(nn.Module):
    """A named container (encoder or decoder) so parameter keys read `encoder.rnn.weight_ih_l0`."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)


def _attention(cfg: ModelConfig, lay: Layout, names: Names) -> nn.Module:
    h = cfg.hid_dim
    if lay.scorer == "luong":
        if cfg.attention == "concat":
            return AdditiveAttention(h, h, h, "concat_qk", bias=False, proj=names.proj, v=names.v)
        return LuongAttention(cfg.attention, h)
    mem = 2 * h if lay.bidirectional else h
    drop = cfg.dropout if lay.attn_dropout else 0.0
    return AdditiveAttention(h, mem, h, lay.scorer, bias=lay.scorer != "separate", dropout=drop,
                             proj=names.proj, v=names.v)


class AttentionSeq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = self.cfg = cfg
        lay = self.layout = layout_of(c)
        n = self.names = NAMES[c.origin]
        e, h = c.emb_dim, c.hid_dim
        mem = 2 * h if lay.bidirectional else h
        enc = {"embedding": nn.Embedding(c.src_vocab_size, e),
               n.rnn: make_rnn(c.cell, e, h, c.n_layers, c.dropout, lay.bidirectional, c.reset_after)}
        if lay.bidirectional:
            enc["fc"] = nn.Linear(mem, h)
        if lay.scorer == "location":
            dec = {"embedding": nn.Embedding(c.tgt_vocab_size, e), n.proj: nn.Linear(e + h, c.max_len),
                   n.combine: nn.Linear(e + mem, h)}
            dec_in = h
        elif lay.scorer == "luong":
            dec = {"embedding": nn.Embedding(c.tgt_vocab_size, e), "attention": _attention(c, lay, n)}
            dec_in = e + (h if c.input_feeding else 0)
        else:
            dec = {"attention": _attention(c, lay, n), "embedding": nn.Embedding(c.tgt_vocab_size, e)}
            dec_in = e + mem
        dec[n.rnn] = make_rnn(c.cell, dec_in, h, c.n_layers, c.dropout, False, c.reset_after)
        if lay.scorer == "luong":
            dec[n.combine] = nn.Linear(2 * h, h, bias=False)
        dec[n.out] = nn.Linear(h + mem + e if lay.out_extra else h, c.tgt_vocab_size)
        self.encoder = _Part(enc)
        self.decoder = _Part(dec)
        self.drop = nn.Dropout(c.dropout)

    # Properties, not attributes: assigning the modules twice would duplicate state_dict keys.
    @property
    def encoder_rnn(self) -> nn.Module:
        return getattr(self.encoder, self.names.rnn)

    @property
    def decoder_rnn(self) -> nn.Module:
        return getattr(self.decoder, self.names.rnn)

    def _embed(self, table: nn.Embedding, ids: torch.Tensor, use_dropout: bool) -> torch.Tensor:
        emb = table(ids)
        return self.drop(emb) if use_dropout and self.cfg.embed_dropout else emb

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        c, lay = self.cfg, self.layout
        width = src.shape[1]
        if lay.scorer == "location" and width > c.max_len:
            raise UserError(
                f"source length {width} exceeds max_len={c.max_len}: location attention (origin "
                f"{c.origin!r}) scores a fixed max_len positions; drop or split longer sentences, "
                f"pad batches to at most {c.max_len}, or build the model with a larger max_len"
            )
        if c.reverse_source:
            src = reverse_within_lengths(src, src_lengths)
        emb = self._embed(self.encoder.embedding, src, lay.src_dropout)
        outputs, final = run_rnn(self.encoder_rnn, emb, src_lengths)
        mask = length_mask(src_lengths.to(src.device), width)
        if lay.bidirectional:
            final = torch.tanh(self.encoder.fc(torch.cat([final[:, -2], final[:, -1]], dim=-1)))[:, None]
        if lay.scorer == "location":
            extra = c.max_len - width
            outputs = F.pad(outputs, (0, 0, 0, extra))
            mask = torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1)
            keys = outputs
        else:
            keys = self.decoder.attention.keys(outputs)
        return EncoderOutput(outputs=outputs, keys=keys, final=final, src_mask=mask)

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        b, s = enc.src_mask.shape
        feed = self.cfg.hid_dim if self.cfg.input_feeding else 0
        z = enc.outputs.new_zeros
        return DecodeState(carry=enc.final, attention=z(b, s), feed=z(b, feed))

    def decode_step(self, enc: EncoderOutput, token: torch.Tensor,
                    state: DecodeState) -> tuple[torch.Tensor, DecodeState]:
        """One step: token [B] -> (logits [B, V], next state); the step's weights are `state.attention`."""
        lay, d = self.layout, self.decoder
        emb = self._embed(d.embedding, token, True)
        if lay.scorer == "luong":
            x = torch.cat([emb, state.feed], dim=-1) if self.cfg.input_feeding else emb
            s, carry = step_rnn(self.decoder_rnn, x, state.carry)
            ctx, weights = d.attention(s, enc.keys, enc.outputs, enc.src_mask)
            feat = torch.tanh(getattr(d, self.names.combine)(torch.cat([ctx, s], dim=-1)))
            feed = feat if self.cfg.input_feeding else state.feed
            return getattr(d, self.names.out)(feat), DecodeState(carry, weights, feed)
        top = state.carry[0] if isinstance(state.carry, tuple) else state.carry
        query = top[:, -1]  # previous top hidden state
        if lay.scorer == "location":
            weights = torch.softmax(getattr(d, self.names.proj)(torch.cat([emb, query], dim=-1)), dim=-1)
            ctx = torch.bmm(weights[:, None, :], enc.outputs)[:, 0]
            x = torch.relu(getattr(d, self.names.combine)(torch.cat([emb, ctx], dim=-1)))
        else:
            ctx, weights = d.attention(query, enc.keys, enc.outputs, enc.src_mask)
            x = torch.cat([ctx, emb] if lay.ctx_first else [emb, ctx], dim=-1)
        s, carry = step_rnn(self.decoder_rnn, x, state.carry)
        feat = torch.cat([s, ctx, emb], dim=-1) if lay.out_extra else s
        return getattr(d, self.names.out)(feat), DecodeState(carry, weights, state.feed)

    def decode(self, enc: EncoderOutput, tgt_in: torch.Tensor,
               return_attention: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced logits [B, T, V] (and weights [B, T, S]), one decode_step per position."""
        state = self.init_decode_state(enc)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, state = self.decode_step(enc, tgt_in[:, t], state)
            logits.append(step_logits)
            weights.append(state.attention)
        logits, weights = torch.stack(logits, dim=1), torch.stack(weights, dim=1)
        return (logits, weights) if return_attention else logits

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def _attention_rules(cfg: ModelConfig, lay: Layout, n: Names) -> list[Rule]:
    if lay.scorer == "location":
        return linear("attention/score", f"decoder.{n.proj}")
    if lay.scorer == "separate":
        return [*linear("attention/W_k", "decoder.attention.W_k", bias=False),
                *linear("attention/W_q", "decoder.attention.W_q", bias=False),
                Rule("attention/v/kernel", f"decoder.attention.{n.v}.weight", "T")]
    if lay.scorer == "luong" and cfg.attention == "dot":
        return []
    if lay.scorer == "luong" and cfg.attention == "general":
        return linear("attention/W_a", "decoder.attention.W_a", bias=False)
    bias = lay.scorer != "luong"
    rules = [Rule("attention/kernel", f"decoder.attention.{n.proj}.weight", "T")]
    if bias:
        rules.append(Rule("attention/bias", f"decoder.attention.{n.proj}.bias"))
    return [*rules, Rule("attention/v/kernel", f"decoder.attention.{n.v}.weight", "T")]


def param_table(cfg: ModelConfig) -> list[Rule]:
    """Flax `AttentionSeq2Seq` params <-> the origin's state_dict keys."""
    lay = layout_of(cfg)
    n = NAMES[cfg.origin]
    rules = [*embedding("src_embed", "encoder.embedding"),
             *rnn_stack("encoder", f"encoder.{n.rnn}", cfg.n_layers, lay.bidirectional)]
    if lay.bidirectional:
        rules += linear("bridge", "encoder.fc")
    rules += _attention_rules(cfg, lay, n)
    rules += [*embedding("tgt_embed", "decoder.embedding"), *rnn_stack("decoder", f"decoder.{n.rnn}", cfg.n_layers)]
    if n.combine and lay.scorer in ("location", "luong"):
        rules += linear("combine", f"decoder.{n.combine}", bias=lay.scorer == "location")
    return rules + linear("out", f"decoder.{n.out}")
