"""PyTorch mirror of `s2s_jax.models.transformer.TransformerSeq2Seq` and its conversion table.

Classes and attribute names are bentrevett tutorial 6's (Encoder, EncoderLayer,
MultiHeadAttentionLayer, PositionwiseFeedforwardLayer, Decoder, DecoderLayer),
so a tutorial checkpoint loads with `strict=True`. The modern options add
`encoder.layer_norm` / `decoder.layer_norm` (pre-LN), drop `pos_embedding`
(sinusoidal) and `decoder.fc_out` (tied embeddings). Masks come from lengths
(equal to the tutorial's `src != pad` masks when padding is only at the end).

Two decode states: the contract's fixed cache of `max_decode_len` positions
(`init_decode_state` / `decode_step`, as in Flax), and the ONNX runtime's
`CacheState` (`init_cache_state` / `decode_step_cached`, the family record's
`cache_state`): buffers of some capacity of which the first `length` positions are
decoded, read by the step, which returns only the new position's keys and values
for the runtime to write into them in place (export/cache.py). An exported step
then neither copies the cache nor holds cfg.max_len positions.
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


class CacheState(NamedTuple):
    """Per layer the self-attention keys/values [B, heads, C, head_dim] in buffers of C positions, of which the
    first `length` (the position being decoded, the same for every row, as in a search, where all rows step
    together) are filled. `decode_step_cached` returns a CacheState of one position: the new keys/values, which
    `write_cache` (or the ONNX runtime, in place) puts at position `length`."""

    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]


def cached_attention(q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, valid: torch.Tensor,
                     k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
    """Attention of q [B, h, 1, d] over the buffer's valid positions and the new one, without concatenating
    them: the buffer's scores (positions where `valid` is False masked) and the new position's score share one
    softmax, so the exported step reads the buffer where it lies instead of copying it into a longer one."""
    q = q / math.sqrt(q.shape[-1])  # scaled once for both scores: one [B, h, 1, d] division instead of two
    energy = torch.matmul(q, k_buf.transpose(2, 3)).masked_fill(~valid, NEG)
    weights = torch.softmax(torch.cat([energy, torch.matmul(q, k_new.transpose(2, 3))], dim=-1), dim=-1)
    size = k_buf.shape[2]
    return torch.matmul(weights[..., :size], v_buf) + weights[..., size:] * v_new


def shared_cross_attention(attention: nn.Module, h: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                           mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention of N = B * K rows (K consecutive rows a sentence: beams) to the encoder tensors of the B
    sentences, without repeating those per beam: a sentence's K rows are its K queries. With K = 1 it is the
    plain call. The cache-state step uses it (the family record's `shared_encoder`), so the ONNX runtime holds
    the encoder's keys and values once per sentence instead of once per beam."""
    out, weights = attention(h.reshape(k.shape[0], -1, h.shape[-1]), k, v, mask)
    return out.reshape(h.shape), weights.transpose(1, 2).reshape(h.shape[0], weights.shape[1], 1, -1)


def cache_mask(state: CacheState, length: torch.Tensor) -> torch.Tensor:
    """[1, 1, 1, C]: which buffer positions hold decoded positions (those below `length`)."""
    return (torch.arange(state.keys[0].shape[2], device=length.device) < length)[None, None, None, :]


def write_cache(state: CacheState, rows: CacheState, length: int) -> CacheState:
    """`state` with `rows` (one position) written at position `length`, functionally (tests and the exporter's
    eager runs; the runtime writes its numpy buffers in place)."""
    def put(buf: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        return buf.index_copy(2, torch.tensor([length], device=buf.device), row)

    return CacheState(tuple(map(put, state.keys, rows.keys)), tuple(map(put, state.values, rows.values)))


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
        # the attention over a cache-state buffer; the ONNX exporter swaps in onnxruntime's fused, in-place op
        # (export/attention_op.py)
        self.cached_attention = cached_attention

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

    def forward_cached(self, x: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, valid: torch.Tensor,
                       k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
        """Self-attention of one step over a `CacheState` buffer plus its own keys/values (`cached_attention`)."""
        out = self.cached_attention(self._split(self.fc_q(x)), k_buf, v_buf, valid, k_new, v_new)
        return self.fc_o(out.permute(0, 2, 1, 3).reshape(x.shape[0], -1, self.hid_dim))


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

    def forward(self, x, self_mask, cross, src_mask, cache=None, pos=None, valid=None):
        """With `cache` and `pos` the step writes position pos of a fixed cache; with `cache` and `valid` it reads
        a `CacheState` buffer and returns the new position's keys/values alone (`self_mask` is then None)."""

        def self_attend(h):
            k, v = self.self_attention.kv(h)
            if valid is not None:
                return self.self_attention.forward_cached(h, *cache, valid, k, v), (k, v)
            if cache is not None:
                hit = (torch.arange(cache[0].shape[2], device=h.device)[None, :] == pos[:, None])[:, None, :, None]
                k, v = torch.where(hit, k, cache[0]), torch.where(hit, v, cache[1])
            out, _ = self.self_attention(h, k, v, self_mask)
            return out, (k, v)

        def cross_attend(h):
            if valid is not None:  # a cache-state step: beams share their sentence's encoder tensors
                return shared_cross_attention(self.encoder_attention, h, cross[0], cross[1], src_mask)
            return self.encoder_attention(h, cross[0], cross[1], src_mask)

        x, kv = self._sublayer(x, self.self_attn_layer_norm, self_attend)
        x, weights = self._sublayer(x, self.enc_attn_layer_norm, cross_attend)
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

    def step_cached(self, enc: EncoderOutput, token: torch.Tensor, state: CacheState, length: torch.Tensor):
        """`step` over a `CacheState`: token [B] at position `length` (a 0-d int64 tensor) -> logits, weights and
        the new position's keys/values. Past a learned position table the lookup fails (the runtime bounds the
        steps)."""
        x = self.embed(token[:, None], length.reshape(1, 1))
        valid = cache_mask(state, length)
        keys, values, weights = [], [], None
        for i, layer in enumerate(self.layers):
            x, weights, (k, v) = layer(x, None, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]), valid=valid)
            keys.append(k)
            values.append(v)
        return self._out(x[:, 0]), weights[:, :, 0], CacheState(tuple(keys), tuple(values))


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

    def init_cache_state(self, enc: EncoderOutput, capacity: int) -> CacheState:
        """Zero buffers of `capacity` positions ([B, heads, capacity, head_dim] per layer), for
        `decode_step_cached`."""
        return empty_cache(self.cfg, enc, capacity)

    def decode_step_cached(self, enc: EncoderOutput, token: torch.Tensor, state: CacheState, length: torch.Tensor,
                           return_attention: bool = False):
        """`decode_step` over a `CacheState` whose first `length` positions are decoded: the same logits as the
        fixed cache at that position, and the new position's keys/values (a one-position CacheState)."""
        logits, weights, rows = self.decoder.step_cached(enc, token, state, length)
        return (logits, rows, weights) if return_attention else (logits, rows)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def empty_cache(cfg: ModelConfig, enc: EncoderOutput, capacity: int) -> CacheState:
    """A `CacheState` of zeros: `capacity` positions for the rows of `enc`."""
    empty = enc.cross_k[0].new_zeros(enc.src_mask.shape[0], cfg.n_heads, capacity, cfg.hid_dim // cfg.n_heads)
    return CacheState(tuple(empty.clone() for _ in range(cfg.n_layers)),
                      tuple(empty.clone() for _ in range(cfg.n_layers)))


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
