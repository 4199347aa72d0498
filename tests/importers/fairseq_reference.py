"""fairseq's transformer and fconv modules, transcribed (fairseq 0.12, which does not install on this Python: its
dependencies pin torchaudio and old omegaconf), as the reference the fairseq importers are tested against.

Transcribed from fairseq/models/transformer/transformer_{encoder,decoder,base}.py, modules/transformer_layer.py,
modules/multihead_attention.py, modules/{sinusoidal,learned}_positional_embedding.py, models/fconv.py,
modules/{conv_tbc,linearized_convolution}.py and utils.make_positions: the training-time (full sequence)
forward path, time-major as fairseq computes, with fairseq's module and parameter names so that `state_dict()`
is a fairseq checkpoint's `model`. Left out: incremental decoding, quant noise, layerdrop, adaptive softmax,
alignment heads, the ONNX/TPU branches. Comments mark the lines each block stands for.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn


def make_positions(tensor, padding_idx):  # fairseq/utils.py
    mask = tensor.ne(padding_idx).int()
    return (torch.cumsum(mask, dim=1).type_as(mask) * mask).long() + padding_idx


class SinusoidalPositionalEmbedding(nn.Module):  # 0.12.2 keeps `_float_tensor` as a saved buffer
    def __init__(self, embedding_dim, padding_idx, init_size=1024):
        super().__init__()
        self.embedding_dim, self.padding_idx = embedding_dim, padding_idx
        self.weights = self.get_embedding(init_size, embedding_dim, padding_idx)
        self.register_buffer("_float_tensor", torch.FloatTensor(1))

    @staticmethod
    def get_embedding(num_embeddings, embedding_dim, padding_idx=None):
        half_dim = embedding_dim // 2
        emb = math.log(10000) / (half_dim - 1)
        emb = torch.exp(torch.arange(half_dim, dtype=torch.float) * -emb)
        emb = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * emb.unsqueeze(0)
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1).view(num_embeddings, -1)
        if embedding_dim % 2 == 1:
            emb = torch.cat([emb, torch.zeros(num_embeddings, 1)], dim=1)
        if padding_idx is not None:
            emb[padding_idx, :] = 0
        return emb

    def forward(self, input):
        bsz, seq_len = input.shape
        max_pos = self.padding_idx + 1 + seq_len
        if max_pos > self.weights.size(0):
            self.weights = self.get_embedding(max_pos, self.embedding_dim, self.padding_idx)
        positions = make_positions(input, self.padding_idx)
        return self.weights.index_select(0, positions.view(-1)).view(bsz, seq_len, -1).detach()


class LearnedPositionalEmbedding(nn.Embedding):
    def forward(self, input):
        return F.embedding(make_positions(input, self.padding_idx), self.weight, self.padding_idx)


def PositionalEmbedding(num_embeddings, embedding_dim, padding_idx, learned=False):  # noqa: N802
    if learned:
        m = LearnedPositionalEmbedding(num_embeddings + padding_idx + 1, embedding_dim, padding_idx)
        nn.init.normal_(m.weight, mean=0, std=embedding_dim**-0.5)
        nn.init.constant_(m.weight[padding_idx], 0)
        return m
    return SinusoidalPositionalEmbedding(embedding_dim, padding_idx, init_size=num_embeddings + padding_idx + 1)


def Embedding(num_embeddings, embedding_dim, padding_idx):  # noqa: N802  (transformer_base.py)
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, mean=0, std=embedding_dim**-0.5)
    nn.init.constant_(m.weight[padding_idx], 0)
    return m


ACTIVATIONS = {"relu": F.relu, "gelu": lambda x: F.gelu(x.float()).type_as(x), "swish": F.silu}


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0):
        super().__init__()
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim**-0.5
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        for m in (self.k_proj, self.v_proj, self.q_proj):  # reset_parameters (qkv_same_dim)
            nn.init.xavier_uniform_(m.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None, attn_mask=None):
        tgt_len, bsz, embed_dim = query.size()
        q, k, v = self.q_proj(query), self.k_proj(key), self.v_proj(value)
        q *= self.scaling
        q = q.contiguous().view(tgt_len, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        k = k.contiguous().view(-1, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        v = v.contiguous().view(-1, bsz * self.num_heads, self.head_dim).transpose(0, 1)
        src_len = k.size(1)
        attn_weights = torch.bmm(q, k.transpose(1, 2))
        if attn_mask is not None:
            attn_weights += attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            attn_weights = attn_weights.view(bsz, self.num_heads, tgt_len, src_len)
            attn_weights = attn_weights.masked_fill(key_padding_mask.unsqueeze(1).unsqueeze(2).to(torch.bool),
                                                    float("-inf"))
            attn_weights = attn_weights.view(bsz * self.num_heads, tgt_len, src_len)
        attn_probs = F.dropout(F.softmax(attn_weights.float(), dim=-1).type_as(attn_weights), self.dropout,
                               self.training)
        attn = torch.bmm(attn_probs, v)
        attn = attn.transpose(0, 1).contiguous().view(tgt_len, bsz, embed_dim)
        return self.out_proj(attn), None


class TransformerEncoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.encoder_embed_dim
        self.self_attn = MultiheadAttention(d, cfg.encoder_attention_heads, cfg.attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout
        self.activation_fn = ACTIVATIONS[cfg.activation_fn]
        self.normalize_before = cfg.encoder_normalize_before
        self.fc1 = nn.Linear(d, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def forward(self, x, encoder_padding_mask):
        residual = x
        if self.normalize_before:
            x = self.self_attn_layer_norm(x)
        x, _ = self.self_attn(query=x, key=x, value=x, key_padding_mask=encoder_padding_mask)
        x = residual + F.dropout(x, self.dropout, self.training)
        if not self.normalize_before:
            x = self.self_attn_layer_norm(x)
        residual = x
        if self.normalize_before:
            x = self.final_layer_norm(x)
        x = self.activation_fn(self.fc1(x))
        x = self.fc2(F.dropout(x, self.activation_dropout, self.training))
        x = residual + F.dropout(x, self.dropout, self.training)
        if not self.normalize_before:
            x = self.final_layer_norm(x)
        return x


class TransformerDecoderLayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d = cfg.decoder_embed_dim
        self.dropout, self.activation_dropout = cfg.dropout, cfg.activation_dropout
        self.self_attn = MultiheadAttention(d, cfg.decoder_attention_heads, cfg.attention_dropout)
        self.activation_fn = ACTIVATIONS[cfg.activation_fn]
        self.normalize_before = cfg.decoder_normalize_before
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = MultiheadAttention(d, cfg.decoder_attention_heads, cfg.attention_dropout)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.decoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.decoder_ffn_embed_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def _block(self, x, norm, fn):
        residual = x
        if self.normalize_before:
            x = norm(x)
        x = residual + F.dropout(fn(x), self.dropout, self.training)
        return x if self.normalize_before else norm(x)

    def forward(self, x, encoder_out, encoder_padding_mask, self_attn_mask=None, self_attn_padding_mask=None):
        x = self._block(x, self.self_attn_layer_norm, lambda h: self.self_attn(
            query=h, key=h, value=h, key_padding_mask=self_attn_padding_mask, attn_mask=self_attn_mask)[0])
        x = self._block(x, self.encoder_attn_layer_norm, lambda h: self.encoder_attn(
            query=h, key=encoder_out, value=encoder_out, key_padding_mask=encoder_padding_mask)[0])
        return self._block(x, self.final_layer_norm, lambda h: self.fc2(F.dropout(
            self.activation_fn(self.fc1(h)), self.activation_dropout, self.training)))


class TransformerEncoder(nn.Module):
    def __init__(self, cfg, dictionary_size, pad, embed_tokens):
        super().__init__()
        self.register_buffer("version", torch.Tensor([3]))
        self.dropout, self.padding_idx = cfg.dropout, pad
        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(cfg.encoder_embed_dim)
        self.embed_positions = PositionalEmbedding(cfg.max_source_positions, cfg.encoder_embed_dim, pad,
                                                   learned=cfg.encoder_learned_pos)
        self.layers = nn.ModuleList([TransformerEncoderLayer(cfg) for _ in range(cfg.encoder_layers)])
        self.layer_norm = nn.LayerNorm(cfg.encoder_embed_dim) if cfg.encoder_normalize_before else None

    def forward(self, src_tokens):
        encoder_padding_mask = src_tokens.eq(self.padding_idx)
        has_pads = encoder_padding_mask.any()
        x = self.embed_scale * self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        x = F.dropout(x, self.dropout, self.training)
        x = x * (1 - encoder_padding_mask.unsqueeze(-1).type_as(x) * has_pads.type_as(x))
        x = x.transpose(0, 1)
        for layer in self.layers:
            x = layer(x, encoder_padding_mask=encoder_padding_mask if has_pads else None)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return {"encoder_out": [x], "encoder_padding_mask": [encoder_padding_mask]}


class TransformerDecoder(nn.Module):
    def __init__(self, cfg, dictionary_size, pad, embed_tokens):
        super().__init__()
        self.register_buffer("version", torch.Tensor([3]))
        self.dropout, self.padding_idx = cfg.dropout, pad
        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(cfg.decoder_embed_dim)
        self.embed_positions = PositionalEmbedding(cfg.max_target_positions, cfg.decoder_embed_dim, pad,
                                                   learned=cfg.decoder_learned_pos)
        self.layers = nn.ModuleList([TransformerDecoderLayer(cfg) for _ in range(cfg.decoder_layers)])
        self.layer_norm = nn.LayerNorm(cfg.decoder_embed_dim) if cfg.decoder_normalize_before else None
        if cfg.share_decoder_input_output_embed:  # build_output_projection
            self.output_projection = nn.Linear(embed_tokens.weight.shape[1], embed_tokens.weight.shape[0], bias=False)
            self.output_projection.weight = self.embed_tokens.weight
        else:
            self.output_projection = nn.Linear(cfg.decoder_embed_dim, dictionary_size, bias=False)
            nn.init.normal_(self.output_projection.weight, mean=0, std=cfg.decoder_embed_dim**-0.5)

    def forward(self, prev_output_tokens, encoder_out):
        positions = self.embed_positions(prev_output_tokens)
        x = self.embed_scale * self.embed_tokens(prev_output_tokens) + positions
        x = F.dropout(x, self.dropout, self.training).transpose(0, 1)
        self_attn_padding_mask = None
        if prev_output_tokens.eq(self.padding_idx).any():
            self_attn_padding_mask = prev_output_tokens.eq(self.padding_idx)
        dim = x.size(0)
        future_mask = torch.triu(torch.zeros([dim, dim]).float().fill_(float("-inf")), 1)  # buffered_future_mask
        for layer in self.layers:
            x = layer(x, encoder_out["encoder_out"][0], encoder_out["encoder_padding_mask"][0],
                      self_attn_mask=future_mask, self_attn_padding_mask=self_attn_padding_mask)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return self.output_projection(x.transpose(0, 1))


class TransformerModel(nn.Module):
    """TransformerModelBase.build_model + forward (logits only)."""

    def __init__(self, cfg, src_size, tgt_size, pad):
        super().__init__()
        enc_embed = Embedding(src_size, cfg.encoder_embed_dim, pad)
        dec_embed = enc_embed if cfg.share_all_embeddings else Embedding(tgt_size, cfg.decoder_embed_dim, pad)
        self.encoder = TransformerEncoder(cfg, src_size, pad, enc_embed)
        self.decoder = TransformerDecoder(cfg, tgt_size, pad, dec_embed)

    def forward(self, src_tokens, prev_output_tokens):
        return self.decoder(prev_output_tokens, self.encoder(src_tokens))


def transformer_args(**overrides) -> SimpleNamespace:
    """A tiny transformer's args, as fairseq's base_architecture completes them."""
    a = dict(arch="transformer", encoder_embed_dim=16, encoder_ffn_embed_dim=32, encoder_layers=2,
             encoder_attention_heads=2, encoder_normalize_before=False, encoder_learned_pos=False,
             decoder_embed_dim=16, decoder_ffn_embed_dim=32, decoder_layers=2, decoder_attention_heads=2,
             decoder_normalize_before=False, decoder_learned_pos=False, attention_dropout=0.0, activation_dropout=0.0,
             activation_fn="relu", dropout=0.1, share_decoder_input_output_embed=False, share_all_embeddings=False,
             no_scale_embedding=False, max_source_positions=64, max_target_positions=64, source_lang="xx",
             target_lang="yy")
    a.update(overrides)
    if a["share_all_embeddings"]:
        a["share_decoder_input_output_embed"] = True
    return SimpleNamespace(**a)


# ---- fconv (fairseq/models/fconv.py, modules/conv_tbc.py, modules/linearized_convolution.py) -------------------


class ConvTBC(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, padding=0):
        super().__init__()
        self.kernel_size, self.padding = (kernel_size,), (padding,)
        self.weight = nn.Parameter(torch.Tensor(kernel_size, in_channels, out_channels))
        self.bias = nn.Parameter(torch.Tensor(out_channels))

    def forward(self, input):
        return torch.conv_tbc(input.contiguous(), self.weight, self.bias, self.padding[0])


class LinearizedConvolution(ConvTBC):
    def forward(self, input):  # the training path: ConvTBC, then the future time steps removed
        output = super().forward(input)
        if self.kernel_size[0] > 1 and self.padding[0] > 0:
            output = output[: -self.padding[0], :, :]
        return output


def Linear(in_features, out_features, dropout=0.0):  # noqa: N802
    m = nn.Linear(in_features, out_features)
    nn.init.normal_(m.weight, mean=0, std=math.sqrt((1 - dropout) / in_features))
    nn.init.constant_(m.bias, 0)
    return nn.utils.weight_norm(m)


def _conv(cls, in_channels, out_channels, kernel_size, dropout=0.0, **kwargs):
    m = cls(in_channels, out_channels, kernel_size, **kwargs)
    nn.init.normal_(m.weight, mean=0, std=math.sqrt((4 * (1.0 - dropout)) / (m.kernel_size[0] * in_channels)))
    nn.init.constant_(m.bias, 0)
    return nn.utils.weight_norm(m, dim=2)


def FConvEmbedding(num_embeddings, embedding_dim, padding_idx, cls=nn.Embedding):  # noqa: N802
    m = cls(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, 0, 0.1)
    nn.init.constant_(m.weight[padding_idx], 0)
    return m


class FConvEncoder(nn.Module):
    def __init__(self, size, pad, embed_dim, convolutions, dropout, max_positions, num_attention_layers):
        super().__init__()
        self.dropout, self.padding_idx, self.num_attention_layers = dropout, pad, num_attention_layers
        self.embed_tokens = FConvEmbedding(size, embed_dim, pad)
        self.embed_positions = FConvEmbedding(max_positions + pad + 1, embed_dim, pad, LearnedPositionalEmbedding)
        in_channels = convolutions[0][0]
        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.convolutions = nn.ModuleList()
        for out_channels, kernel_size in convolutions:  # residual 1, same widths: no projections
            self.convolutions.append(_conv(ConvTBC, in_channels, out_channels * 2, kernel_size, dropout=dropout,
                                           padding=kernel_size // 2))
            in_channels = out_channels
        self.fc2 = Linear(in_channels, embed_dim)

    def forward(self, src_tokens):
        x = self.embed_tokens(src_tokens) + self.embed_positions(src_tokens)
        x = F.dropout(x, self.dropout, self.training)
        input_embedding = x
        x = self.fc1(x)
        encoder_padding_mask = src_tokens.eq(self.padding_idx).t()
        if not encoder_padding_mask.any():
            encoder_padding_mask = None
        x = x.transpose(0, 1)
        residuals = [x]
        for conv in self.convolutions:
            residual = residuals[-1]
            if encoder_padding_mask is not None:
                x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
            x = F.glu(conv(F.dropout(x, self.dropout, self.training)), dim=2)
            x = (x + residual) * math.sqrt(0.5)
            residuals.append(x)
        x = self.fc2(x.transpose(1, 0))
        if encoder_padding_mask is not None:
            encoder_padding_mask = encoder_padding_mask.t()
            x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
        y = (x + input_embedding) * math.sqrt(0.5)  # GradMultiply is the identity forward
        return {"encoder_out": (x, y), "encoder_padding_mask": encoder_padding_mask}


class AttentionLayer(nn.Module):
    def __init__(self, conv_channels, embed_dim):
        super().__init__()
        self.in_projection = Linear(conv_channels, embed_dim)
        self.out_projection = Linear(embed_dim, conv_channels)

    def forward(self, x, target_embedding, encoder_out, encoder_padding_mask):
        residual = x
        x = (self.in_projection(x) + target_embedding) * math.sqrt(0.5)
        x = torch.bmm(x, encoder_out[0])
        if encoder_padding_mask is not None:
            x = x.float().masked_fill(encoder_padding_mask.unsqueeze(1), float("-inf")).type_as(x)
        sz = x.size()
        x = F.softmax(x.view(sz[0] * sz[1], sz[2]), dim=1).view(sz)
        x = torch.bmm(x, encoder_out[1])
        s = encoder_out[1].size(1)
        if encoder_padding_mask is None:
            x = x * (s * math.sqrt(1.0 / s))
        else:
            s = (s - encoder_padding_mask.type_as(x).sum(dim=1, keepdim=True)).unsqueeze(-1)
            x = x * (s * s.rsqrt())
        return (self.out_projection(x) + residual) * math.sqrt(0.5), None


class FConvDecoder(nn.Module):
    def __init__(self, size, pad, embed_dim, out_embed_dim, convolutions, dropout, max_positions, share_embed):
        super().__init__()
        self.register_buffer("version", torch.Tensor([2]))
        self.dropout = dropout
        self.embed_tokens = FConvEmbedding(size, embed_dim, pad)
        self.embed_positions = FConvEmbedding(max_positions + pad + 1, embed_dim, pad, LearnedPositionalEmbedding)
        in_channels = convolutions[0][0]
        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.convolutions, self.attention = nn.ModuleList(), nn.ModuleList()
        for out_channels, kernel_size in convolutions:
            self.convolutions.append(_conv(LinearizedConvolution, in_channels, out_channels * 2, kernel_size,
                                           padding=kernel_size - 1, dropout=dropout))
            self.attention.append(AttentionLayer(out_channels, embed_dim))
            in_channels = out_channels
        self.fc2 = Linear(in_channels, out_embed_dim)
        if share_embed:
            self.fc3 = nn.Linear(out_embed_dim, size)
            self.fc3.weight = self.embed_tokens.weight
        else:
            self.fc3 = Linear(out_embed_dim, size, dropout=dropout)

    def forward(self, prev_output_tokens, encoder_out):
        encoder_padding_mask = encoder_out["encoder_padding_mask"]
        encoder_a, encoder_b = encoder_out["encoder_out"]
        encoder_a = encoder_a.transpose(1, 2).contiguous()  # _split_encoder_out
        x = self.embed_tokens(prev_output_tokens) + self.embed_positions(prev_output_tokens)
        x = F.dropout(x, self.dropout, self.training)
        target_embedding = x
        x = self.fc1(x).transpose(0, 1)
        residuals = [x]
        for conv, attention in zip(self.convolutions, self.attention, strict=True):
            residual = residuals[-1]
            x = F.glu(conv(F.dropout(x, self.dropout, self.training)), dim=2)
            x = x.transpose(0, 1)
            x, _ = attention(x, target_embedding, (encoder_a, encoder_b), encoder_padding_mask)
            x = x.transpose(0, 1)
            x = (x + residual) * math.sqrt(0.5)
            residuals.append(x)
        x = self.fc2(x.transpose(0, 1))
        return self.fc3(F.dropout(x, self.dropout, self.training))


class FConvModel(nn.Module):
    def __init__(self, args, src_size, tgt_size, pad, layers):
        super().__init__()
        self.encoder = FConvEncoder(src_size, pad, args.encoder_embed_dim, layers, args.dropout,
                                    args.max_source_positions, len(layers))
        self.decoder = FConvDecoder(tgt_size, pad, args.decoder_embed_dim, args.decoder_out_embed_dim, layers,
                                    args.dropout, args.max_target_positions, args.share_input_output_embed)

    def forward(self, src_tokens, prev_output_tokens):
        return self.decoder(prev_output_tokens, self.encoder(src_tokens))


def fconv_args(**overrides) -> SimpleNamespace:
    a = dict(arch="fconv", encoder_embed_dim=16, encoder_layers="[(24, 3)] * 2", decoder_embed_dim=16,
             decoder_layers="[(24, 3)] * 2", decoder_out_embed_dim=16, decoder_attention="True", dropout=0.1,
             share_input_output_embed=False, max_source_positions=64, max_target_positions=64, source_lang="xx",
             target_lang="yy")
    a.update(overrides)
    return SimpleNamespace(**a)
