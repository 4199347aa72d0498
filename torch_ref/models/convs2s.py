"""PyTorch mirror of `s2s_jax.models.convs2s.ConvS2S` and its conversion table.

Module names are seed 001's (bentrevett tutorial 5), so its checkpoints load
with `strict=True`: `encoder.{tok_embedding, pos_embedding, emb2hid, hid2emb,
convs.i}`, `decoder.{tok_embedding, pos_embedding, emb2hid, hid2emb,
attn_hid2emb, attn_emb2hid, fc_out, convs.i}`. The fconv style keeps these
names but has one attention pair per layer (`decoder.attn_hid2emb.i`); with
`weight_norm` the weights are `torch.nn.utils.parametrizations.weight_norm`
parametrizations (`<name>.parametrizations.weight.original0` = g,
`original1` = v). The computation follows the Flax model step for step,
including its padding rules (see the Flax module docstring).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from s2s_jax.config import ModelConfig
from s2s_jax.layers.positions import check_length
from torch_ref.convert import Rule, embedding

SCALE = math.sqrt(0.5)
NEG = -1e10


class EncoderOutput(NamedTuple):
    conved: torch.Tensor
    combined: torch.Tensor
    src_mask: torch.Tensor


class DecodeState(NamedTuple):
    buffers: tuple[torch.Tensor, ...]
    pos: torch.Tensor


class GradMultiply(torch.autograd.Function):
    """Identity forward, gradient times `scale` backward (fairseq)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def _finish(m: nn.Module, cfg: ModelConfig, std: float | None) -> nn.Module:
    """fconv: the paper's normal init with zero bias; then weight norm (g starts at ||v||) if asked."""
    if cfg.conv_style == "fconv" and std is not None:
        nn.init.normal_(m.weight, 0.0, std)
        nn.init.zeros_(m.bias)
    return _weight_norm(m, name="weight", dim=0) if cfg.weight_norm else m


def _linear(cfg: ModelConfig, n_in: int, n_out: int, dropout: float = 0.0) -> nn.Module:
    return _finish(nn.Linear(n_in, n_out), cfg, math.sqrt((1.0 - dropout) / n_in))


def _conv(cfg: ModelConfig, padding: int) -> nn.Module:
    c, k = cfg, cfg.kernel_size
    conv = nn.Conv1d(c.hid_dim, 2 * c.hid_dim, k, padding=padding)
    return _finish(conv, cfg, math.sqrt(4.0 * (1.0 - c.dropout) / (k * c.hid_dim)))


def _embedding(cfg: ModelConfig, n: int, zero_row: int | None) -> nn.Embedding:
    m = nn.Embedding(n, cfg.emb_dim)
    if cfg.conv_style == "fconv":
        nn.init.normal_(m.weight, 0.0, 0.1)
        if zero_row is not None and zero_row < n:
            with torch.no_grad():
                m.weight[zero_row].zero_()
    return m


def _length_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = self.cfg = cfg
        self.tok_embedding = _embedding(c, c.src_vocab_size, c.pad_id)
        self.pos_embedding = _embedding(c, c.max_len, None)
        self.emb2hid = _linear(c, c.emb_dim, c.hid_dim, c.dropout)
        self.hid2emb = _linear(c, c.hid_dim, c.emb_dim)
        self.convs = nn.ModuleList([_conv(c, (c.kernel_size - 1) // 2) for _ in range(c.n_layers)])
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        c = self.cfg
        check_length(src.shape[1], c.max_len, "source")
        mask = _length_mask(src_lengths, src.shape[1])
        pos = torch.arange(src.shape[1], device=src.device)[None]
        embedded = self.dropout(self.tok_embedding(src) + self.pos_embedding(pos))
        x = self.emb2hid(embedded)
        for conv in self.convs:
            x = x.masked_fill(~mask[..., None], 0.0)
            conved = F.glu(conv(self.dropout(x).permute(0, 2, 1)), dim=1).permute(0, 2, 1)
            x = (conved + x) * SCALE
        conved = self.hid2emb(x)
        if c.conv_style == "fconv":
            conved = conved.masked_fill(~mask[..., None], 0.0)
            if conved.requires_grad:  # backward-only; skipped under no_grad so export sees plain ops
                conved = GradMultiply.apply(conved, 1.0 / (2.0 * c.n_layers))
        return EncoderOutput(conved, (conved + embedded) * SCALE, mask)


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = self.cfg = cfg
        self.fconv = c.conv_style == "fconv"
        self.tok_embedding = _embedding(c, c.tgt_vocab_size, c.pad_id)
        self.pos_embedding = _embedding(c, c.max_len, None)
        self.emb2hid = _linear(c, c.emb_dim, c.hid_dim, c.dropout)
        self.hid2emb = _linear(c, c.hid_dim, c.emb_dim)
        if self.fconv:
            self.attn_hid2emb = nn.ModuleList([_linear(c, c.hid_dim, c.emb_dim) for _ in range(c.n_layers)])
            self.attn_emb2hid = nn.ModuleList([_linear(c, c.emb_dim, c.hid_dim) for _ in range(c.n_layers)])
        else:
            self.attn_hid2emb = _linear(c, c.hid_dim, c.emb_dim)
            self.attn_emb2hid = _linear(c, c.emb_dim, c.hid_dim)
        self.fc_out = _linear(c, c.emb_dim, c.tgt_vocab_size, c.dropout)
        self.convs = nn.ModuleList([_conv(c, 0) for _ in range(c.n_layers)])
        self.dropout = nn.Dropout(c.dropout)
        self.fill = float(c.pad_id) if c.pad_fill == "pad_id" else 0.0

    def _attend(self, i: int, conved: torch.Tensor, embedded: torch.Tensor, enc: EncoderOutput):
        hid2emb = self.attn_hid2emb[i] if self.fconv else self.attn_hid2emb
        emb2hid = self.attn_emb2hid[i] if self.fconv else self.attn_emb2hid
        query = (hid2emb(conved) + embedded) * SCALE
        energy = torch.matmul(query, enc.conved.transpose(1, 2))
        weights = torch.softmax(energy.masked_fill(~enc.src_mask[:, None, :], NEG), dim=-1)
        attended = torch.matmul(weights, enc.combined)
        if self.fconv:
            attended = attended * torch.sqrt(enc.src_mask.sum(1).to(attended.dtype))[:, None, None]
        return weights, (conved + emb2hid(attended)) * SCALE

    def _residual(self, x: torch.Tensor, x_in: torch.Tensor, conved: torch.Tensor) -> torch.Tensor:
        return (conved + (x if self.fconv else x_in)) * SCALE

    def forward(self, enc: EncoderOutput, tgt: torch.Tensor):
        c = self.cfg
        check_length(tgt.shape[1], c.max_len, "target")
        pos = torch.arange(tgt.shape[1], device=tgt.device)[None]
        embedded = self.dropout(self.tok_embedding(tgt) + self.pos_embedding(pos))
        x = self.emb2hid(embedded)
        fill = x.new_full((x.shape[0], c.kernel_size - 1, c.hid_dim), self.fill)
        weights = None
        for i, conv in enumerate(self.convs):
            x_in = self.dropout(x)
            padded = torch.cat([fill, x_in], dim=1)
            conved = F.glu(conv(padded.permute(0, 2, 1)), dim=1).permute(0, 2, 1)
            weights, conved = self._attend(i, conved, embedded, enc)
            x = self._residual(x, x_in, conved)
        return self.fc_out(self.dropout(self.hid2emb(x))), weights

    def init_state(self, enc: EncoderOutput) -> DecodeState:
        c, batch = self.cfg, enc.conved.shape[0]
        buffer = enc.conved.new_full((batch, c.kernel_size - 1, c.hid_dim), self.fill)
        pos = torch.zeros(batch, dtype=torch.long, device=enc.conved.device)
        return DecodeState(tuple(buffer.clone() for _ in range(c.n_layers)), pos)

    def step(self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState):
        embedded = self.dropout(self.tok_embedding(token) + self.pos_embedding(state.pos))[:, None]
        x = self.emb2hid(embedded)
        buffers, weights = [], None
        for i, conv in enumerate(self.convs):
            x_in = self.dropout(x)
            window = torch.cat([state.buffers[i], x_in], dim=1)
            conved = F.glu(conv(window.permute(0, 2, 1)), dim=1).permute(0, 2, 1)
            weights, conved = self._attend(i, conved, embedded, enc)
            x = self._residual(x, x_in, conved)
            buffers.append(window[:, 1:])
        logits = self.fc_out(self.dropout(self.hid2emb(x[:, 0])))
        return logits, weights[:, 0], DecodeState(tuple(buffers), state.pos + 1)


class ConvS2S(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        return self.encoder(src, src_lengths)

    def decode(self, enc: EncoderOutput, tgt_in: torch.Tensor, return_attention: bool = False):
        logits, weights = self.decoder(enc, tgt_in)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        """The decoder's starting state; its size does not depend on `max_decode_len` (kept for the contract)."""
        return self.decoder.init_state(enc)

    def decode_step(self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState,
                    return_attention: bool = False):
        logits, weights, state = self.decoder.step(enc, token, state)
        return (logits, state, weights) if return_attention else (logits, state)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def _weights(cfg: ModelConfig, flax_prefix: str, torch_prefix: str) -> list[Rule]:
    """A Linear or Conv1d: kernel/weight (or weight-norm g and v) transposed, bias as is."""
    if cfg.weight_norm:
        rules = [Rule(f"{flax_prefix}/g", f"{torch_prefix}.parametrizations.weight.original0", "T"),
                 Rule(f"{flax_prefix}/v", f"{torch_prefix}.parametrizations.weight.original1", "T")]
    else:
        rules = [Rule(f"{flax_prefix}/kernel", f"{torch_prefix}.weight", "T")]
    return rules + [Rule(f"{flax_prefix}/bias", f"{torch_prefix}.bias")]


def param_table(cfg: ModelConfig) -> list[Rule]:
    """Flax <-> torch rules; conv kernels [k, in, out] are torch's [out, in, k] reversed (the 'T' transform)."""
    rules: list[Rule] = []
    for side in ("encoder", "decoder"):
        rules += embedding(f"{side}/tok_embedding", f"{side}.tok_embedding")
        rules += embedding(f"{side}/pos_embedding", f"{side}.pos_embedding")
        names = ["emb2hid", "hid2emb"] + (["fc_out"] if side == "decoder" else [])
        for name in names:
            rules += _weights(cfg, f"{side}/{name}", f"{side}.{name}")
        for i in range(cfg.n_layers):
            rules += _weights(cfg, f"{side}/convs_{i}", f"{side}.convs.{i}")
    for name in ("attn_hid2emb", "attn_emb2hid"):
        if cfg.conv_style == "fconv":
            for i in range(cfg.n_layers):
                rules += _weights(cfg, f"decoder/{name}_{i}", f"decoder.{name}.{i}")
        else:
            rules += _weights(cfg, f"decoder/{name}", f"decoder.{name}")
    return rules
