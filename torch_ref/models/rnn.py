"""PyTorch mirror of `s2s_jax.models.rnn.RNNSeq2Seq` and its conversion table.

Submodule names follow `cfg.origin`, so `state_dict()` has exactly the keys of
the original code and its checkpoints load with `strict=True`:

| origin            | encoder                 | decoder                                |
|-------------------|-------------------------|----------------------------------------|
| bentrevett-*, ""  | embedding, rnn          | embedding, rnn, fc_out                 |
| d2l-seq2seq       | embedding, rnn          | embedding, rnn, dense                  |
| seed002           | embedding, gru          | embedding, gru, out                    |

The computation is the Flax model's, batch-first, with the same contract
methods; dropout sits where Flax puts it (embeddings when `embed_dropout`,
between stacked layers).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from s2s_jax.config import ConfigError, ModelConfig
from torch_ref.convert import Rule, embedding, linear, rnn_stack
from torch_ref.layers import State, make_rnn, reverse_within_lengths, run_rnn, step_rnn

# origin -> (name of the recurrent stack, name of the output layer)
NAMES = {
    "": ("rnn", "fc_out"),
    "bentrevett-lstm": ("rnn", "fc_out"),
    "bentrevett-gru": ("rnn", "fc_out"),
    "d2l-seq2seq": ("rnn", "dense"),
    "seed002": ("gru", "out"),
}


def _names(cfg: ModelConfig) -> tuple[str, str]:
    if cfg.origin not in NAMES:
        raise ConfigError(f"origin={cfg.origin!r} is not an rnn-family origin; valid: {sorted(NAMES)}")
    return NAMES[cfg.origin]


class EncoderOutput(NamedTuple):
    """Batch-first, as in Flax: outputs [B, S, H], final [B, L, H] (pair for LSTM), context [B, H], src_mask [B, S]."""

    outputs: torch.Tensor
    final: State
    context: torch.Tensor
    src_mask: torch.Tensor


class DecodeState(NamedTuple):
    """The decoder's batch-first carry [B, L, H] (a pair (h, c) for LSTM)."""

    carry: State


class _Part(nn.Module):
    """A named container (encoder or decoder) so parameter keys read `encoder.rnn.weight_ih_l0`."""

    def __init__(self, **modules: nn.Module) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)


class RNNSeq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = self.cfg = cfg
        if c.bidirectional:
            raise ConfigError(
                "the rnn family has unidirectional encoders; bidirectional=True needs an attention preset"
            )
        self.rnn_name, self.out_name = _names(c)
        dec_in = c.emb_dim + (c.hid_dim if c.context != "none" else 0)
        out_in = c.hid_dim + (c.emb_dim + c.hid_dim if c.context == "cho" else 0)
        self.encoder = _Part(**{
            "embedding": nn.Embedding(c.src_vocab_size, c.emb_dim),
            self.rnn_name: make_rnn(c.cell, c.emb_dim, c.hid_dim, c.n_layers, c.dropout, False, c.reset_after),
        })
        self.decoder = _Part(**{
            "embedding": nn.Embedding(c.tgt_vocab_size, c.emb_dim),
            self.rnn_name: make_rnn(c.cell, dec_in, c.hid_dim, c.n_layers, c.dropout, False, c.reset_after),
            self.out_name: nn.Linear(out_in, c.tgt_vocab_size),
        })
        self.drop = nn.Dropout(c.dropout if c.embed_dropout else 0.0)

    # Properties, not attributes: assigning the modules twice would duplicate state_dict keys.
    @property
    def encoder_rnn(self) -> nn.Module:
        return getattr(self.encoder, self.rnn_name)

    @property
    def decoder_rnn(self) -> nn.Module:
        return getattr(self.decoder, self.rnn_name)

    @property
    def out(self) -> nn.Linear:
        return getattr(self.decoder, self.out_name)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        if self.cfg.reverse_source:
            src = reverse_within_lengths(src, src_lengths)
        emb = self.drop(self.encoder.embedding(src))
        outputs, final = run_rnn(self.encoder_rnn, emb, src_lengths)
        top = (final[0] if self.cfg.cell == "lstm" else final)[:, -1]
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths.to(src.device)[:, None]
        return EncoderOutput(outputs=outputs, final=final, context=top, src_mask=mask)

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        if self.cfg.context == "cho":
            # Cho et al.: the decoder starts from the context vector itself.
            return DecodeState(carry=enc.context[:, None, :])
        return DecodeState(carry=enc.final)

    def _logits(self, emb: torch.Tensor, hidden: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        if self.cfg.context == "cho":
            hidden = torch.cat([emb, hidden, context], dim=-1)
        return self.out(hidden)

    def decode(self, enc: EncoderOutput, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits [B, T, V] for the whole target prefix `tgt_in`."""
        emb = self.drop(self.decoder.embedding(tgt_in))
        context = enc.context[:, None, :].expand(emb.shape[0], emb.shape[1], enc.context.shape[-1])
        x = torch.cat([emb, context], dim=-1) if self.cfg.context != "none" else emb
        hidden, _ = run_rnn(self.decoder_rnn, x, None, self.init_decode_state(enc).carry)
        return self._logits(emb, hidden, context)

    def decode_step(
        self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState
    ) -> tuple[torch.Tensor, DecodeState]:
        """One step: token [B] -> (logits [B, V], next state)."""
        emb = self.drop(self.decoder.embedding(token))
        x = torch.cat([emb, enc.context], dim=-1) if self.cfg.context != "none" else emb
        hidden, carry = step_rnn(self.decoder_rnn, x, state.carry)
        return self._logits(emb, hidden, enc.context), DecodeState(carry=carry)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def param_table(cfg: ModelConfig) -> list[Rule]:
    """Flax `RNNSeq2Seq` params <-> the origin's state_dict keys."""
    rnn, out = _names(cfg)
    return [
        *embedding("src_embed", "encoder.embedding"),
        *rnn_stack("encoder", f"encoder.{rnn}", cfg.n_layers),
        *embedding("tgt_embed", "decoder.embedding"),
        *rnn_stack("decoder", f"decoder.{rnn}", cfg.n_layers),
        *linear("out", f"decoder.{out}"),
    ]

