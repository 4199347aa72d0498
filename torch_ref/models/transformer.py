"""PyTorch mirror of `s2s_jax.models.transformer.TransformerSeq2Seq` and its conversion table.

Classes and attribute names are bentrevett tutorial 6's (Encoder, EncoderLayer,
MultiHeadAttentionLayer, PositionwiseFeedforwardLayer, Decoder, DecoderLayer),
so a tutorial checkpoint loads with `strict=True`. The modern options add
`encoder.layer_norm` / `decoder.layer_norm` (pre-LN), drop `pos_embedding`
(sinusoidal) and `decoder.fc_out` (tied embeddings). Masks come from lengths
(equal to the tutorial's `src != pad` masks when padding is only at the end).

Two decode states: the contract's fixed cache of `max_decode_len` positions
(`init_decode_state` / `decode_step`, as in Flax), and the ONNX runtime's
`GrowingState` (`init_growing_state` / `decode_step_growing`, the family record's
`growing_state`), a cache of the positions decoded so far to which each step
appends one: an exported step then reads and writes t positions at step t instead
of cfg.max_len, and no position is ever masked.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from s2s_jax.config import ModelConfig
from s2s_jax.layers.positions import check_length
from torch_ref.convert import Rule, embedding, linear

NEG = -1e10


class EncoderOutput(NamedTuple):
    cross_k: tuple[torch.Tensor, ...]
    cross_v: tuple[torch.Tensor, ...]
    src_mask: torch.Tensor


class DecodeState(NamedTuple):
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]
    pos: torch.Tensor


class GrowingState(NamedTuple):
    """Per layer the self-attention keys/values of the t positions decoded so far [B, heads, t, head_dim]; the
    position being decoded is t, the same for every row (as in a search, where all rows step together)."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Same formula and float32 operations as `s2s_jax.layers.positions.sinusoidal`."""
    half = (dim + 1) // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32) * (-2.0 * math.log(10000.0) / dim))
    angles = positions.to(torch.float32)[..., None] * freqs
    table = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(*angles.shape[:-1], 2 * half)
    return table[..., :dim]


class MultiHeadAttentionLayer(nn.Module):
    def __init__(self, hid_dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.hid_dim, self.n_heads, self.head_dim = hid_dim, n_heads, hid_dim // n_heads
        self.fc_q = nn.Linear(hid_dim, hid_dim)
        self.fc_k = nn.Linear(hid_dim, hid_dim)
        self.fc_v = nn.Linear(hid_dim, hid_dim)
        self.fc_o = nn.Linear(hid_dim, hid_dim)
        self.dropout = nn.Dropout(dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.n_heads, self.head_dim).permute(0, 2, 1, 3)

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.fc_k(x)), self._split(self.fc_v(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
        q = self._split(self.fc_q(x))
        energy = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.head_dim)
        weights = torch.softmax(energy if mask is None else energy.masked_fill(~mask, NEG), dim=-1)
        out = torch.matmul(self.dropout(weights), v).permute(0, 2, 1, 3).reshape(x.shape[0], -1, self.hid_dim)
        return self.fc_o(out), weights


class PositionwiseFeedforwardLayer(nn.Module):
    def __init__(self, hid_dim: int, pf_dim: int, dropout: float) -> None:
        super().__init__()
        self.fc_1 = nn.Linear(hid_dim, pf_dim)
        self.fc_2 = nn.Linear(pf_dim, hid_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_2(self.dropout(torch.relu(self.fc_1(x))))


class _Layer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_ln = cfg.pre_ln
        self.dropout = nn.Dropout(cfg.dropout)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn):
        if self.pre_ln:
            y, extra = fn(norm(x))
            return x + self.dropout(y), extra
        y, extra = fn(x)
        return norm(x + self.dropout(y)), extra


class EncoderLayer(_Layer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        c = cfg
        self.self_attn_layer_norm = nn.LayerNorm(c.hid_dim)
        self.ff_layer_norm = nn.LayerNorm(c.hid_dim)
        self.self_attention = MultiHeadAttentionLayer(c.hid_dim, c.n_heads, c.dropout)
        self.positionwise_feedforward = PositionwiseFeedforwardLayer(c.hid_dim, c.ff_dim, c.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, _ = self._sublayer(x, self.self_attn_layer_norm, lambda h: self.self_attention(h, *self.self_attention.kv(h),
                                                                                           mask))
        x, _ = self._sublayer(x, self.ff_layer_norm, lambda h: (self.positionwise_feedforward(h), None))
        return x


class DecoderLayer(_Layer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        c = cfg
        self.self_attn_layer_norm = nn.LayerNorm(c.hid_dim)
        self.enc_attn_layer_norm = nn.LayerNorm(c.hid_dim)
        self.ff_layer_norm = nn.LayerNorm(c.hid_dim)
        self.self_attention = MultiHeadAttentionLayer(c.hid_dim, c.n_heads, c.dropout)
        self.encoder_attention = MultiHeadAttentionLayer(c.hid_dim, c.n_heads, c.dropout)
        self.positionwise_feedforward = PositionwiseFeedforwardLayer(c.hid_dim, c.ff_dim, c.dropout)

    def forward(self, x, self_mask, cross, src_mask, cache=None, pos=None):
        """With `cache` and `pos` the step writes position pos of a fixed cache; with `cache` alone it appends to a
        growing one (`GrowingState`; `self_mask` is then None: every cached position is attended)."""

        def self_attend(h):
            k, v = self.self_attention.kv(h)
            if cache is not None and pos is None:
                k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
            elif cache is not None:
                hit = (torch.arange(cache[0].shape[2], device=h.device)[None, :] == pos[:, None])[:, None, :, None]
                k, v = torch.where(hit, k, cache[0]), torch.where(hit, v, cache[1])
            out, _ = self.self_attention(h, k, v, self_mask)
            return out, (k, v)

        x, kv = self._sublayer(x, self.self_attn_layer_norm, self_attend)
        x, weights = self._sublayer(x, self.enc_attn_layer_norm,
                                    lambda h: self.encoder_attention(h, cross[0], cross[1], src_mask))
        x, _ = self._sublayer(x, self.ff_layer_norm, lambda h: (self.positionwise_feedforward(h), None))
        return x, weights, kv


class _Embedded(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        c = self.cfg = cfg
        self.tok_embedding = nn.Embedding(vocab_size, c.hid_dim)
        if c.positions == "learned":
            self.pos_embedding = nn.Embedding(c.max_len, c.hid_dim)
        self.dropout = nn.Dropout(c.dropout)

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        pos = self.pos_embedding(positions) if c.positions == "learned" else sinusoidal(positions, c.hid_dim)
        return self.dropout(self.tok_embedding(tokens) * math.sqrt(c.hid_dim) + pos)

    def _check(self, length: int, what: str) -> None:
        if self.cfg.positions == "learned":
            check_length(length, self.cfg.max_len, what)


class Encoder(_Embedded):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.src_vocab_size)
        self.layers = nn.ModuleList([EncoderLayer(cfg) for _ in range(cfg.n_layers)])
        if cfg.pre_ln:
            self.layer_norm = nn.LayerNorm(cfg.hid_dim)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(src.shape[1], "source")
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[:, None]
        x = self.embed(src, torch.arange(src.shape[1], device=src.device)[None])
        for layer in self.layers:
            x = layer(x, mask[:, None, None, :])
        return (self.layer_norm(x) if self.cfg.pre_ln else x), mask


class Decoder(_Embedded):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg, cfg.tgt_vocab_size)
        self.layers = nn.ModuleList([DecoderLayer(cfg) for _ in range(cfg.n_layers)])
        if cfg.pre_ln:
            self.layer_norm = nn.LayerNorm(cfg.hid_dim)
        if not cfg.tie_embeddings:
            self.fc_out = nn.Linear(cfg.hid_dim, cfg.tgt_vocab_size)

    def _out(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.pre_ln:
            x = self.layer_norm(x)
        return x @ self.tok_embedding.weight.T if self.cfg.tie_embeddings else self.fc_out(x)

    def forward(self, enc: EncoderOutput, tgt: torch.Tensor):
        t = tgt.shape[1]
        self._check(t, "target")
        x = self.embed(tgt, torch.arange(t, device=tgt.device)[None])
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=tgt.device))[None, None]
        weights = None
        for i, layer in enumerate(self.layers):
            x, weights, _ = layer(x, causal, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :])
        return self._out(x), weights

    def step(self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState):
        pos, size = state.pos, state.keys[0].shape[2]
        x = self.embed(token[:, None], pos[:, None])
        self_mask = (torch.arange(size, device=token.device)[None, :] <= pos[:, None])[:, None, None, :]
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.layers):
            x, weights, (k, v) = layer(x, self_mask, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]), pos=pos)
            keys.append(k)
            values.append(v)
        logits = self._out(x[:, 0])
        logits = torch.where((pos < size)[:, None], logits, torch.full_like(logits, float("nan")))
        return logits, weights[:, :, 0], DecodeState(tuple(keys), tuple(values), pos + 1)

    def step_growing(self, enc: EncoderOutput, token: torch.Tensor, state: GrowingState):
        """`step` over a `GrowingState`: token [B] at position t (the cache length) -> logits, weights, t + 1
        positions. Past a learned position table the embedding lookup fails (the runtime bounds the steps)."""
        t = state.keys[0].shape[2]
        x = self.embed(token[:, None], torch.arange(t, t + 1, device=token.device)[None])
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.layers):
            x, weights, (k, v) = layer(x, None, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]))
            keys.append(k)
            values.append(v)
        return self._out(x[:, 0]), weights[:, :, 0], GrowingState(tuple(keys), tuple(values))


class TransformerSeq2Seq(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self._init_weights()

    def _init_weights(self) -> None:
        """As the Flax model: xavier-uniform matrices (the tutorial's `initialize_weights`, embeddings included);
        the modern preset keeps zero biases and N(0, hid^-1/2) embeddings (fairseq)."""
        origin = self.cfg.origin == "bentrevett-transformer"
        for name, p in self.named_parameters():
            if "layer_norm" in name:
                continue
            if "embedding" in name and not origin:
                nn.init.normal_(p, 0.0, self.cfg.hid_dim**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif not origin:
                nn.init.zeros_(p)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        memory, mask = self.encoder(src, src_lengths)
        kvs = [layer.encoder_attention.kv(memory) for layer in self.decoder.layers]
        return EncoderOutput(tuple(k for k, _ in kvs), tuple(v for _, v in kvs), mask)

    def decode(self, enc: EncoderOutput, tgt_in: torch.Tensor, return_attention: bool = False):
        logits, weights = self.decoder(enc, tgt_in)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        c = self.cfg
        size = max_decode_len or c.max_len
        batch = enc.src_mask.shape[0]
        empty = enc.cross_k[0].new_zeros(batch, c.n_heads, size, c.hid_dim // c.n_heads)
        caches = tuple(empty.clone() for _ in range(c.n_layers))
        pos = torch.zeros(batch, dtype=torch.long, device=empty.device)
        return DecodeState(caches, tuple(x.clone() for x in caches), pos)

    def decode_step(self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState,
                    return_attention: bool = False):
        logits, weights, state = self.decoder.step(enc, token, state)
        return (logits, state, weights) if return_attention else (logits, state)

    def init_growing_state(self, enc: EncoderOutput) -> GrowingState:
        """Caches of no positions yet ([B, heads, 0, head_dim] per layer), for `decode_step_growing`."""
        c = self.cfg
        empty = enc.cross_k[0].new_zeros(enc.src_mask.shape[0], c.n_heads, 0, c.hid_dim // c.n_heads)
        return GrowingState(tuple(empty.clone() for _ in range(c.n_layers)),
                            tuple(empty.clone() for _ in range(c.n_layers)))

    def decode_step_growing(self, enc: EncoderOutput, token: torch.Tensor, state: GrowingState,
                            return_attention: bool = False):
        """`decode_step` with a `GrowingState`: the same logits as the fixed cache at the same position."""
        logits, weights, state = self.decoder.step_growing(enc, token, state)
        return (logits, state, weights) if return_attention else (logits, state)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def layer_norm(flax_prefix: str, torch_prefix: str) -> list[Rule]:
    """Flax nn.LayerNorm (scale, bias) <-> torch nn.LayerNorm (weight, bias)."""
    return [Rule(f"{flax_prefix}/scale", f"{torch_prefix}.weight"), Rule(f"{flax_prefix}/bias", f"{torch_prefix}.bias")]


def _attention(flax_prefix: str, torch_prefix: str) -> list[Rule]:
    return [r for n in ("q", "k", "v", "o") for r in linear(f"{flax_prefix}/fc_{n}", f"{torch_prefix}.fc_{n}")]


def param_table(cfg: ModelConfig) -> list[Rule]:
    """Flax <-> torch rules; Flax layer i is `layers_{i}`, torch `layers.{i}`."""
    rules: list[Rule] = []
    for side in ("encoder", "decoder"):
        rules += embedding(f"{side}/tok_embedding", f"{side}.tok_embedding")
        if cfg.positions == "learned":
            rules += embedding(f"{side}/pos_embedding", f"{side}.pos_embedding")
        if cfg.pre_ln:
            rules += layer_norm(f"{side}/layer_norm", f"{side}.layer_norm")
        norms = ["self_attn_layer_norm"] + (["enc_attn_layer_norm"] if side == "decoder" else []) + ["ff_layer_norm"]
        attentions = ["self_attention"] + (["encoder_attention"] if side == "decoder" else [])
        for i in range(cfg.n_layers):
            f, t = f"{side}/layers_{i}", f"{side}.layers.{i}"
            for name in norms:
                rules += layer_norm(f"{f}/{name}", f"{t}.{name}")
            for name in attentions:
                rules += _attention(f"{f}/{name}", f"{t}.{name}")
            for name in ("fc_1", "fc_2"):
                rules += linear(f"{f}/positionwise_feedforward/{name}", f"{t}.positionwise_feedforward.{name}")
    if not cfg.tie_embeddings:
        rules += linear("decoder/fc_out", "decoder.fc_out")
    return rules
