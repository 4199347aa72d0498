"""PyTorch mirror of `s2s_jax.models.marian.MarianSeq2Seq`, with Hugging Face MarianMTModel's state_dict keys.

`MarianMTModel(cfg).state_dict()` has exactly the keys and shapes of the `model.safetensors` that
transformers' `MarianMTModel.save_pretrained` writes, so such a file loads here with `strict=True`:
`final_logits_bias`, `model.shared.weight` (or `model.encoder.embed_tokens.weight` and
`model.decoder.embed_tokens.weight` when the vocabularies are separate), `lm_head.weight` only when the
output layer is not tied, and per layer `model.{encoder,decoder}.layers.i.{self_attn,encoder_attn}.
{q,k,v,out}_proj`, `self_attn_layer_norm`, `encoder_attn_layer_norm`, `fc1`, `fc2`, `final_layer_norm`.
Tied tables are one module, so they appear once; the sinusoid tables are buffers that are not saved (Hugging
Face does not save them either). Options Marian lacks take the names Hugging Face gives them elsewhere:
`model.{encoder,decoder}.layer_norm` (pre-LN, MBart), `embed_positions.weight` (learned, BART).
The computation follows the Flax model step for step; masks come from lengths.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from s2s_jax.config import ModelConfig
from s2s_jax.layers.positions import check_length
from s2s_jax.models.marian import position_table
from torch_ref.convert import Rule, embedding, linear
from torch_ref.models.transformer import (
    CacheState,
    DecodeState,
    EncoderOutput,
    cache_mask,
    cached_attention,
    empty_cache,
    layer_norm,
    shared_cross_attention,
    sinusoidal,
)

NEG = -1e10
ACTIVATIONS = {"relu": F.relu, "swish": F.silu, "gelu": F.gelu}


class MarianAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h = cfg.hid_dim
        self.n_heads, self.head_dim, self.dropout = cfg.n_heads, h // cfg.n_heads, cfg.attention_dropout
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(h, h) for _ in range(4))
        self.cached_attention = cached_attention  # swapped by the ONNX exporter (export/attention_op.py)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], -1, self.n_heads, self.head_dim).permute(0, 2, 1, 3)

    def kv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.k_proj(x)), self._split(self.v_proj(x))

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor):
        energy = torch.matmul(self._split(self.q_proj(x)), k.transpose(2, 3)) / math.sqrt(self.head_dim)
        weights = torch.softmax(energy if mask is None else energy.masked_fill(~mask, NEG), dim=-1)
        out = torch.matmul(F.dropout(weights, self.dropout, self.training), v)
        return self.out_proj(out.permute(0, 2, 1, 3).reshape(x.shape[0], -1, self.n_heads * self.head_dim)), weights

    def forward_cached(self, x: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, valid: torch.Tensor,
                       k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
        """Self-attention of one step over a `CacheState` buffer plus its own keys/values (`cached_attention`)."""
        out = self.cached_attention(self._split(self.q_proj(x)), k_buf, v_buf, valid, k_new, v_new)
        return self.out_proj(out.permute(0, 2, 1, 3).reshape(x.shape[0], -1, self.n_heads * self.head_dim))


class _Layer(nn.Module):
    """The residual wiring (post-LN, or pre-LN) and the feed-forward block both layers share."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.fc1 = nn.Linear(cfg.hid_dim, cfg.ff_dim)
        self.fc2 = nn.Linear(cfg.ff_dim, cfg.hid_dim)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.hid_dim)
        self.final_layer_norm = nn.LayerNorm(cfg.hid_dim)

    def _sublayer(self, x: torch.Tensor, norm: nn.Module, fn) -> tuple[torch.Tensor, Any]:
        drop = lambda y: F.dropout(y, self.cfg.dropout, self.training)  # noqa: E731
        if self.cfg.pre_ln:
            y, extra = fn(norm(x))
            return x + drop(y), extra
        y, extra = fn(x)
        return norm(x + drop(y)), extra

    def _ffn(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = F.dropout(ACTIVATIONS[self.cfg.activation](self.fc1(x)), self.cfg.activation_dropout, self.training)
        return self.fc2(h), None


class MarianEncoderLayer(_Layer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.self_attn = MarianAttention(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, _ = self._sublayer(x, self.self_attn_layer_norm, lambda h: self.self_attn(h, *self.self_attn.kv(h), mask))
        return self._sublayer(x, self.final_layer_norm, self._ffn)[0]


class MarianDecoderLayer(_Layer):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.self_attn = MarianAttention(cfg)
        self.encoder_attn = MarianAttention(cfg)
        self.encoder_attn_layer_norm = nn.LayerNorm(cfg.hid_dim)

    def forward(self, x, self_mask, cross, src_mask, cache=None, pos=None, valid=None):
        """With `cache` (keys, values [B, h, M, d]) the new position's keys/values are written at `pos`; with
        `cache` and `valid` the step reads a `CacheState` buffer and returns the new position's keys/values alone
        (the ONNX runtime's in-place cache, `self_mask` None)."""

        def self_attend(h):
            k, v = self.self_attn.kv(h)
            if valid is not None:
                return self.self_attn.forward_cached(h, *cache, valid, k, v), (k, v)
            if cache is not None:
                hit = (torch.arange(cache[0].shape[2], device=h.device)[None, :] == pos[:, None])[:, None, :, None]
                k, v = torch.where(hit, k, cache[0]), torch.where(hit, v, cache[1])
            return self.self_attn(h, k, v, self_mask)[0], (k, v)

        def cross_attend(h):
            if valid is not None:  # a cache-state step: beams share their sentence's encoder tensors
                return shared_cross_attention(self.encoder_attn, h, cross[0], cross[1], src_mask)
            return self.encoder_attn(h, cross[0], cross[1], src_mask)

        x, kv = self._sublayer(x, self.self_attn_layer_norm, self_attend)
        x, weights = self._sublayer(x, self.encoder_attn_layer_norm, cross_attend)
        x, _ = self._sublayer(x, self.final_layer_norm, self._ffn)
        return x, weights, kv


class _Stack(nn.Module):
    """Token embeddings (its own `embed_tokens`, or the shared table, held outside the state_dict), positions,
    layers and the pre-LN final norm of one side."""

    def __init__(self, cfg: ModelConfig, vocab: int, shared: nn.Embedding | None, layer: type) -> None:
        super().__init__()
        self.cfg = cfg
        if shared is None:
            self.embed_tokens = nn.Embedding(vocab, cfg.hid_dim)
        self._shared = (shared,)  # a tuple: not registered, so the shared table is saved once, as model.shared
        if cfg.positions == "learned":
            self.embed_positions = nn.Embedding(cfg.max_len, cfg.hid_dim)
        table = position_table(cfg)
        self.register_buffer("table", None if table is None else torch.from_numpy(table), persistent=False)
        self.layers = nn.ModuleList([layer(cfg) for _ in range(cfg.n_layers)])
        if cfg.pre_ln:
            self.layer_norm = nn.LayerNorm(cfg.hid_dim)

    def tokens(self) -> nn.Embedding:
        return self._shared[0] if self._shared[0] is not None else self.embed_tokens

    def embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        x = self.tokens()(tokens) * (math.sqrt(c.hid_dim) if c.scale_embedding else 1.0)
        if c.positions == "learned":
            pos = self.embed_positions(positions)
        elif self.table is not None:
            pos = F.embedding(positions, self.table)
        else:
            pos = sinusoidal(positions, c.hid_dim)
        return F.dropout(x + pos, c.dropout, self.training)

    def check(self, length: int, what: str) -> None:
        if self.cfg.positions != "sinusoidal":
            check_length(length, self.cfg.max_len, what)


class MarianModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.shared = nn.Embedding(cfg.src_vocab_size, cfg.hid_dim) if cfg.share_embeddings else None
        self.encoder = _Stack(cfg, cfg.src_vocab_size, self.shared, MarianEncoderLayer)
        self.decoder = _Stack(cfg, cfg.tgt_vocab_size, self.shared, MarianDecoderLayer)


class MarianMTModel(nn.Module):
    """The contract (encode, decode, init_decode_state, decode_step, forward) over Hugging Face's module tree."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = MarianModel(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(cfg.hid_dim, cfg.tgt_vocab_size, bias=False)
        self.register_buffer("final_logits_bias", torch.zeros(1, cfg.tgt_vocab_size))
        for name, p in self.named_parameters():  # Hugging Face's _init_weights: N(0, 0.02), zero biases
            if "layer_norm" not in name:
                nn.init.normal_(p, 0.0, 0.02) if p.dim() > 1 else nn.init.zeros_(p)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        dec = self.model.decoder
        if self.cfg.pre_ln:
            x = dec.layer_norm(x)
        logits = x @ dec.tokens().weight.T if self.cfg.tie_embeddings else self.lm_head(x)
        return logits + self.final_logits_bias[0]

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> EncoderOutput:
        enc = self.model.encoder
        enc.check(src.shape[1], "source")
        mask = torch.arange(src.shape[1], device=src.device)[None, :] < src_lengths[:, None]
        x = enc.embed(src, torch.arange(src.shape[1], device=src.device)[None])
        for layer in enc.layers:
            x = layer(x, mask[:, None, None, :])
        if self.cfg.pre_ln:
            x = enc.layer_norm(x)
        kvs = [layer.encoder_attn.kv(x) for layer in self.model.decoder.layers]
        return EncoderOutput(tuple(k for k, _ in kvs), tuple(v for _, v in kvs), mask)

    def decode(self, enc: EncoderOutput, tgt_in: torch.Tensor, return_attention: bool = False):
        dec, t = self.model.decoder, tgt_in.shape[1]
        dec.check(t, "target")
        x = dec.embed(tgt_in, torch.arange(t, device=tgt_in.device)[None])
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=tgt_in.device))[None, None]
        weights = None
        for i, layer in enumerate(dec.layers):
            x, weights, _ = layer(x, causal, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :])
        logits = self._logits(x)
        return (logits, weights) if return_attention else logits

    def init_decode_state(self, enc: EncoderOutput, max_decode_len: int | None = None) -> DecodeState:
        c, batch = self.cfg, enc.src_mask.shape[0]
        empty = enc.cross_k[0].new_zeros(batch, c.n_heads, max_decode_len or c.max_len, c.hid_dim // c.n_heads)
        caches = tuple(empty.clone() for _ in range(c.n_layers))
        return DecodeState(caches, tuple(x.clone() for x in caches), torch.zeros(batch, dtype=torch.long,
                                                                                 device=empty.device))

    def decode_step(self, enc: EncoderOutput, token: torch.Tensor, state: DecodeState, return_attention: bool = False):
        dec, pos, size = self.model.decoder, state.pos, state.keys[0].shape[2]
        x = dec.embed(token[:, None], pos[:, None].clamp(max=self.cfg.max_len - 1))
        self_mask = (torch.arange(size, device=token.device)[None, :] <= pos[:, None])[:, None, None, :]
        keys, values, weights = [], [], None
        for i, layer in enumerate(dec.layers):
            x, weights, (k, v) = layer(x, self_mask, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]), pos=pos)
            keys.append(k)
            values.append(v)
        logits = self._logits(x[:, 0])
        logits = torch.where((pos < size)[:, None], logits, torch.full_like(logits, float("nan")))
        state = DecodeState(tuple(keys), tuple(values), pos + 1)
        return (logits, state, weights[:, :, 0]) if return_attention else (logits, state)

    def init_cache_state(self, enc: EncoderOutput, capacity: int) -> CacheState:
        """Zero buffers of `capacity` positions, for `decode_step_cached` (the family record's `cache_state`)."""
        return empty_cache(self.cfg, enc, capacity)

    def decode_step_cached(self, enc: EncoderOutput, token: torch.Tensor, state: CacheState, length: torch.Tensor,
                           return_attention: bool = False):
        """`decode_step` over buffers whose first `length` positions are decoded; returns the logits and the new
        position's keys/values (a one-position CacheState, written at `length` by the caller)."""
        dec = self.model.decoder
        x = dec.embed(token[:, None], length.reshape(1, 1).clamp(max=self.cfg.max_len - 1))
        valid = cache_mask(state, length)
        keys, values, weights = [], [], None
        for i, layer in enumerate(dec.layers):
            x, weights, (k, v) = layer(x, None, (enc.cross_k[i], enc.cross_v[i]), enc.src_mask[:, None, None, :],
                                       cache=(state.keys[i], state.values[i]), valid=valid)
            keys.append(k)
            values.append(v)
        logits, rows = self._logits(x[:, 0]), CacheState(tuple(keys), tuple(values))
        return (logits, rows, weights[:, :, 0]) if return_attention else (logits, rows)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(src, src_lengths), tgt_in)


def _attention(flax_prefix: str, torch_prefix: str) -> list[Rule]:
    return [r for ours, theirs in (("q", "q"), ("k", "k"), ("v", "v"), ("o", "out"))
            for r in linear(f"{flax_prefix}/fc_{ours}", f"{torch_prefix}.{theirs}_proj")]


def param_table(cfg: ModelConfig) -> list[Rule]:
    """Flax <-> Hugging Face rules; Flax layer i is `{side}_layers_{i}`, Hugging Face `model.{side}.layers.{i}`."""
    rules = [Rule("final_logits_bias", "final_logits_bias")]
    if cfg.share_embeddings:
        rules += embedding("shared", "model.shared")
    else:
        rules += embedding("encoder_embed", "model.encoder.embed_tokens")
        rules += embedding("decoder_embed", "model.decoder.embed_tokens")
    if not cfg.tie_embeddings:
        rules += linear("lm_head", "lm_head", bias=False)
    for side in ("encoder", "decoder"):
        if cfg.positions == "learned":
            rules += embedding(f"{side}_pos", f"model.{side}.embed_positions")
        if cfg.pre_ln:
            rules += layer_norm(f"{side}_norm", f"model.{side}.layer_norm")
        norms = [("self_attn_layer_norm", "self_attn_layer_norm"), ("ff_layer_norm", "final_layer_norm")]
        attentions = [("self_attention", "self_attn")]
        if side == "decoder":
            norms.append(("enc_attn_layer_norm", "encoder_attn_layer_norm"))
            attentions.append(("encoder_attention", "encoder_attn"))
        for i in range(cfg.n_layers):
            f, t = f"{side}_layers_{i}", f"model.{side}.layers.{i}"
            for ours, theirs in norms:
                rules += layer_norm(f"{f}/{ours}", f"{t}.{theirs}")
            for ours, theirs in attentions:
                rules += _attention(f"{f}/{ours}", f"{t}.{theirs}")
            rules += linear(f"{f}/positionwise_feedforward/fc_1", f"{t}.fc1")
            rules += linear(f"{f}/positionwise_feedforward/fc_2", f"{t}.fc2")
    return rules
