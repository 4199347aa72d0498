"""bentrevett tutorial 6 (Transformer): its state_dict loads strictly and its outputs are reproduced.

The origin classes below are the tutorial's (Encoder, EncoderLayer,
MultiHeadAttentionLayer, PositionwiseFeedforwardLayer, Decoder, DecoderLayer,
Seq2Seq with make_src_mask / make_trg_mask and its xavier `initialize_weights`),
transcribed with comments dropped. The tutorial masks by pad id, so padded
batches are compared directly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import torch_ref
from s2s_jax import build_model, presets
from tests.helpers import random_batch
from torch_ref.convert import torch_to_flax

DEVICE = torch.device("cpu")


class Encoder(nn.Module):
    def __init__(self, input_dim, hid_dim, n_layers, n_heads, pf_dim, dropout, device, max_length=100):
        super().__init__()
        self.device = device
        self.tok_embedding = nn.Embedding(input_dim, hid_dim)
        self.pos_embedding = nn.Embedding(max_length, hid_dim)
        self.layers = nn.ModuleList([EncoderLayer(hid_dim, n_heads, pf_dim, dropout, device)
                                     for _ in range(n_layers)])
        self.dropout = nn.Dropout(dropout)
        self.scale = torch.sqrt(torch.FloatTensor([hid_dim])).to(device)

    def forward(self, src, src_mask):
        batch_size = src.shape[0]
        src_len = src.shape[1]
        pos = torch.arange(0, src_len).unsqueeze(0).repeat(batch_size, 1).to(self.device)
        src = self.dropout((self.tok_embedding(src) * self.scale) + self.pos_embedding(pos))
        for layer in self.layers:
            src = layer(src, src_mask)
        return src


class EncoderLayer(nn.Module):
    def __init__(self, hid_dim, n_heads, pf_dim, dropout, device):
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(hid_dim)
        self.ff_layer_norm = nn.LayerNorm(hid_dim)
        self.self_attention = MultiHeadAttentionLayer(hid_dim, n_heads, dropout, device)
        self.positionwise_feedforward = PositionwiseFeedforwardLayer(hid_dim, pf_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, src_mask):
        _src, _ = self.self_attention(src, src, src, src_mask)
        src = self.self_attn_layer_norm(src + self.dropout(_src))
        _src = self.positionwise_feedforward(src)
        src = self.ff_layer_norm(src + self.dropout(_src))
        return src


class MultiHeadAttentionLayer(nn.Module):
    def __init__(self, hid_dim, n_heads, dropout, device):
        super().__init__()
        assert hid_dim % n_heads == 0
        self.hid_dim = hid_dim
        self.n_heads = n_heads
        self.head_dim = hid_dim // n_heads
        self.fc_q = nn.Linear(hid_dim, hid_dim)
        self.fc_k = nn.Linear(hid_dim, hid_dim)
        self.fc_v = nn.Linear(hid_dim, hid_dim)
        self.fc_o = nn.Linear(hid_dim, hid_dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = torch.sqrt(torch.FloatTensor([self.head_dim])).to(device)

    def forward(self, query, key, value, mask=None):
        batch_size = query.shape[0]
        Q = self.fc_q(query)
        K = self.fc_k(key)
        V = self.fc_v(value)
        Q = Q.view(batch_size, -1, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        K = K.view(batch_size, -1, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        V = V.view(batch_size, -1, self.n_heads, self.head_dim).permute(0, 2, 1, 3)
        energy = torch.matmul(Q, K.permute(0, 1, 3, 2)) / self.scale
        if mask is not None:
            energy = energy.masked_fill(mask == 0, -1e10)
        attention = torch.softmax(energy, dim=-1)
        x = torch.matmul(self.dropout(attention), V)
        x = x.permute(0, 2, 1, 3).contiguous()
        x = x.view(batch_size, -1, self.hid_dim)
        x = self.fc_o(x)
        return x, attention


class PositionwiseFeedforwardLayer(nn.Module):
    def __init__(self, hid_dim, pf_dim, dropout):
        super().__init__()
        self.fc_1 = nn.Linear(hid_dim, pf_dim)
        self.fc_2 = nn.Linear(pf_dim, hid_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(torch.relu(self.fc_1(x)))
        x = self.fc_2(x)
        return x


class Decoder(nn.Module):
    def __init__(self, output_dim, hid_dim, n_layers, n_heads, pf_dim, dropout, device, max_length=100):
        super().__init__()
        self.device = device
        self.tok_embedding = nn.Embedding(output_dim, hid_dim)
        self.pos_embedding = nn.Embedding(max_length, hid_dim)
        self.layers = nn.ModuleList([DecoderLayer(hid_dim, n_heads, pf_dim, dropout, device)
                                     for _ in range(n_layers)])
        self.fc_out = nn.Linear(hid_dim, output_dim)
        self.dropout = nn.Dropout(dropout)
        self.scale = torch.sqrt(torch.FloatTensor([hid_dim])).to(device)

    def forward(self, trg, enc_src, trg_mask, src_mask):
        batch_size = trg.shape[0]
        trg_len = trg.shape[1]
        pos = torch.arange(0, trg_len).unsqueeze(0).repeat(batch_size, 1).to(self.device)
        trg = self.dropout((self.tok_embedding(trg) * self.scale) + self.pos_embedding(pos))
        for layer in self.layers:
            trg, attention = layer(trg, enc_src, trg_mask, src_mask)
        output = self.fc_out(trg)
        return output, attention


class DecoderLayer(nn.Module):
    def __init__(self, hid_dim, n_heads, pf_dim, dropout, device):
        super().__init__()
        self.self_attn_layer_norm = nn.LayerNorm(hid_dim)
        self.enc_attn_layer_norm = nn.LayerNorm(hid_dim)
        self.ff_layer_norm = nn.LayerNorm(hid_dim)
        self.self_attention = MultiHeadAttentionLayer(hid_dim, n_heads, dropout, device)
        self.encoder_attention = MultiHeadAttentionLayer(hid_dim, n_heads, dropout, device)
        self.positionwise_feedforward = PositionwiseFeedforwardLayer(hid_dim, pf_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, trg, enc_src, trg_mask, src_mask):
        _trg, _ = self.self_attention(trg, trg, trg, trg_mask)
        trg = self.self_attn_layer_norm(trg + self.dropout(_trg))
        _trg, attention = self.encoder_attention(trg, enc_src, enc_src, src_mask)
        trg = self.enc_attn_layer_norm(trg + self.dropout(_trg))
        _trg = self.positionwise_feedforward(trg)
        trg = self.ff_layer_norm(trg + self.dropout(_trg))
        return trg, attention


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder, src_pad_idx, trg_pad_idx, device):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.src_pad_idx = src_pad_idx
        self.trg_pad_idx = trg_pad_idx
        self.device = device

    def make_src_mask(self, src):
        src_mask = (src != self.src_pad_idx).unsqueeze(1).unsqueeze(2)
        return src_mask

    def make_trg_mask(self, trg):
        trg_pad_mask = (trg != self.trg_pad_idx).unsqueeze(1).unsqueeze(2)
        trg_len = trg.shape[1]
        trg_sub_mask = torch.tril(torch.ones((trg_len, trg_len), device=self.device)).bool()
        trg_mask = trg_pad_mask & trg_sub_mask
        return trg_mask

    def forward(self, src, trg):
        src_mask = self.make_src_mask(src)
        trg_mask = self.make_trg_mask(trg)
        enc_src = self.encoder(src, src_mask)
        output, attention = self.decoder(trg, enc_src, trg_mask, src_mask)
        return output, attention


def initialize_weights(m):
    if hasattr(m, "weight") and m.weight.dim() > 1:
        nn.init.xavier_uniform_(m.weight.data)


PAD = 1


@pytest.fixture(scope="module")
def setup():
    cfg = presets.get("bentrevett-transformer", src_vocab_size=13, tgt_vocab_size=11, hid_dim=16, n_layers=2,
                      n_heads=2, ff_dim=32, max_len=20, pad_id=PAD, bos_id=2, eos_id=0)
    torch.manual_seed(0)
    c = cfg
    enc = Encoder(c.src_vocab_size, c.hid_dim, c.n_layers, c.n_heads, c.ff_dim, c.dropout, DEVICE, c.max_len)
    dec = Decoder(c.tgt_vocab_size, c.hid_dim, c.n_layers, c.n_heads, c.ff_dim, c.dropout, DEVICE, c.max_len)
    origin = Seq2Seq(enc, dec, PAD, PAD, DEVICE).eval()
    origin.apply(initialize_weights)
    return cfg, origin, torch_to_flax(cfg, origin.state_dict())


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.int64))


def test_state_dict_keys_are_the_tutorials(setup):
    cfg, origin, _ = setup
    mirror = torch_ref.build_model(cfg)
    assert list(mirror.state_dict()) == list(origin.state_dict())
    mirror.load_state_dict(origin.state_dict(), strict=True)


def test_flax_reproduces_origin_outputs(setup):
    """Padded batch (the tutorial masks `src != pad`): logits and last-layer attention equal the tutorial's."""
    cfg, origin, params = setup
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5, src_lengths=[6, 1, 4])
    with torch.no_grad():
        ref, ref_attn = origin(_t(batch["src"]), _t(batch["tgt_in"]))
    mirror = torch_ref.build_model(cfg).eval()
    mirror.load_state_dict(origin.state_dict(), strict=True)
    with torch.no_grad():
        t_out = mirror(_t(batch["src"]), _t(batch["src_lengths"]), _t(batch["tgt_in"]))
    model = build_model(cfg)
    v = {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    logits, attn = model.apply(v, enc, batch["tgt_in"], method="decode", return_attention=True)
    err = float(np.abs(np.asarray(logits) - ref.numpy()).max())
    t_err = float((t_out - ref).abs().max())
    print(f"bentrevett-transformer vs tutorial 6: flax {err:.2e}, torch_ref {t_err:.2e}")
    assert err <= 1e-5 and t_err <= 1e-5
    assert float(np.abs(np.asarray(attn) - ref_attn.numpy()).max()) <= 1e-6


def test_incremental_decoding_reproduces_origin(setup):
    """Greedy-style stepping with the KV cache gives the tutorial's full-pass logits at every position."""
    cfg, origin, params = setup
    batch = random_batch(cfg, batch=2, src_len=5, tgt_len=6, src_lengths=[5, 2])
    with torch.no_grad():
        ref, _ = origin(_t(batch["src"]), _t(batch["tgt_in"]))
    model, v = build_model(cfg), {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    state = model.apply(v, enc, 6, method="init_decode_state")
    for t in range(6):
        logits, state = model.apply(v, enc, batch["tgt_in"][:, t], state, method="decode_step")
        assert float(np.abs(np.asarray(logits) - ref[:, t].numpy()).max()) <= 1e-5
