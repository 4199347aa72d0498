"""Seed 001 (bentrevett tutorial 5, ConvS2S): its state_dict loads strictly and its outputs are reproduced.

The origin classes below are transcribed from the seed (comments dropped,
`device` kept); the tutorial's Seq2Seq wrapper returns (output, attention).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torch_ref
from s2s_jax import build_model, presets
from tests.helpers import random_batch
from torch_ref.convert import torch_to_flax

DEVICE = torch.device("cpu")


class Encoder(nn.Module):
    def __init__(self, input_dim, emb_dim, hid_dim, n_layers, kernel_size, dropout, device, max_length=100):
        super().__init__()
        assert kernel_size % 2 == 1, "Kernel size must be odd!"
        self.device = device
        self.scale = torch.sqrt(torch.FloatTensor([0.5])).to(device)
        self.tok_embedding = nn.Embedding(input_dim, emb_dim)
        self.pos_embedding = nn.Embedding(max_length, emb_dim)
        self.emb2hid = nn.Linear(emb_dim, hid_dim)
        self.hid2emb = nn.Linear(hid_dim, emb_dim)
        self.convs = nn.ModuleList([nn.Conv1d(in_channels=hid_dim, out_channels=2 * hid_dim,
                                              kernel_size=kernel_size, padding=(kernel_size - 1) // 2)
                                    for _ in range(n_layers)])
        self.dropout = nn.Dropout(dropout)

    def forward(self, src):
        batch_size = src.shape[0]
        src_len = src.shape[1]
        pos = torch.arange(0, src_len).unsqueeze(0).repeat(batch_size, 1).to(self.device)
        tok_embedded = self.tok_embedding(src)
        pos_embedded = self.pos_embedding(pos)
        embedded = self.dropout(tok_embedded + pos_embedded)
        conv_input = self.emb2hid(embedded)
        conv_input = conv_input.permute(0, 2, 1)
        for _i, conv in enumerate(self.convs):
            conved = conv(self.dropout(conv_input))
            conved = F.glu(conved, dim=1)
            conved = (conved + conv_input) * self.scale
            conv_input = conved
        conved = self.hid2emb(conved.permute(0, 2, 1))
        combined = (conved + embedded) * self.scale
        return conved, combined


class Decoder(nn.Module):
    def __init__(self, output_dim, emb_dim, hid_dim, n_layers, kernel_size, dropout, trg_pad_idx, device,
                 max_length=100):
        super().__init__()
        self.kernel_size = kernel_size
        self.trg_pad_idx = trg_pad_idx
        self.device = device
        self.scale = torch.sqrt(torch.FloatTensor([0.5])).to(device)
        self.tok_embedding = nn.Embedding(output_dim, emb_dim)
        self.pos_embedding = nn.Embedding(max_length, emb_dim)
        self.emb2hid = nn.Linear(emb_dim, hid_dim)
        self.hid2emb = nn.Linear(hid_dim, emb_dim)
        self.attn_hid2emb = nn.Linear(hid_dim, emb_dim)
        self.attn_emb2hid = nn.Linear(emb_dim, hid_dim)
        self.fc_out = nn.Linear(emb_dim, output_dim)
        self.convs = nn.ModuleList([nn.Conv1d(in_channels=hid_dim, out_channels=2 * hid_dim, kernel_size=kernel_size)
                                    for _ in range(n_layers)])
        self.dropout = nn.Dropout(dropout)

    def calculate_attention(self, embedded, conved, encoder_conved, encoder_combined):
        conved_emb = self.attn_hid2emb(conved.permute(0, 2, 1))
        combined = (conved_emb + embedded) * self.scale
        energy = torch.matmul(combined, encoder_conved.permute(0, 2, 1))
        attention = F.softmax(energy, dim=2)
        attended_encoding = torch.matmul(attention, encoder_combined)
        attended_encoding = self.attn_emb2hid(attended_encoding)
        attended_combined = (conved + attended_encoding.permute(0, 2, 1)) * self.scale
        return attention, attended_combined

    def forward(self, trg, encoder_conved, encoder_combined):
        batch_size = trg.shape[0]
        trg_len = trg.shape[1]
        pos = torch.arange(0, trg_len).unsqueeze(0).repeat(batch_size, 1).to(self.device)
        tok_embedded = self.tok_embedding(trg)
        pos_embedded = self.pos_embedding(pos)
        embedded = self.dropout(tok_embedded + pos_embedded)
        conv_input = self.emb2hid(embedded)
        conv_input = conv_input.permute(0, 2, 1)
        batch_size = conv_input.shape[0]
        hid_dim = conv_input.shape[1]
        for _i, conv in enumerate(self.convs):
            conv_input = self.dropout(conv_input)
            padding = torch.zeros(batch_size, hid_dim, self.kernel_size - 1).fill_(self.trg_pad_idx).to(self.device)
            padded_conv_input = torch.cat((padding, conv_input), dim=2)
            conved = conv(padded_conv_input)
            conved = F.glu(conved, dim=1)
            attention, conved = self.calculate_attention(embedded, conved, encoder_conved, encoder_combined)
            conved = (conved + conv_input) * self.scale
            conv_input = conved
        conved = self.hid2emb(conved.permute(0, 2, 1))
        output = self.fc_out(self.dropout(conved))
        return output, attention


class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, src, trg):
        encoder_conved, encoder_combined = self.encoder(src)
        output, attention = self.decoder(trg, encoder_conved, encoder_combined)
        return output, attention


PAD = 1  # not 0, so the decoder's pad-valued causal padding is exercised


def make_origin(cfg) -> Seq2Seq:
    torch.manual_seed(0)
    c = cfg
    enc = Encoder(c.src_vocab_size, c.emb_dim, c.hid_dim, c.n_layers, c.kernel_size, c.dropout, DEVICE, c.max_len)
    dec = Decoder(c.tgt_vocab_size, c.emb_dim, c.hid_dim, c.n_layers, c.kernel_size, c.dropout, PAD, DEVICE,
                  c.max_len)
    return Seq2Seq(enc, dec).eval()


@pytest.fixture(scope="module")
def setup():
    cfg = presets.get("bentrevett-convs2s", src_vocab_size=13, tgt_vocab_size=11, emb_dim=8, hid_dim=16,
                      n_layers=2, max_len=20, pad_id=PAD, bos_id=2, eos_id=0)
    origin = make_origin(cfg)
    return cfg, origin, torch_to_flax(cfg, origin.state_dict())


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x.astype(np.int64))


def test_state_dict_keys_are_the_seeds(setup):
    cfg, origin, _ = setup
    mirror = torch_ref.build_model(cfg)
    assert list(mirror.state_dict()) == list(origin.state_dict())
    mirror.load_state_dict(origin.state_dict(), strict=True)


def test_flax_reproduces_origin_outputs(setup):
    """Full-length rows: logits and last-layer attention equal the seed's, in torch_ref and in Flax."""
    cfg, origin, params = setup
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5, src_lengths=[6, 6, 6])
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
    print(f"bentrevett-convs2s vs seed 001: flax {err:.2e}, torch_ref {float((t_out - ref).abs().max()):.2e}")
    assert err <= 1e-5 and float((t_out - ref).abs().max()) <= 1e-5
    assert float(np.abs(np.asarray(attn) - ref_attn.numpy()).max()) <= 1e-6


def test_padded_rows_equal_the_origin_on_each_row_alone(setup):
    """Where the seed would let padding leak in, our padded row equals the seed run on that row unpadded."""
    cfg, origin, params = setup
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=4, src_lengths=[6, 1, 4])
    logits = np.asarray(build_model(cfg).apply({"params": params}, batch["src"], batch["src_lengths"],
                                               batch["tgt_in"]))
    with torch.no_grad():
        leaky, _ = origin(_t(batch["src"]), _t(batch["tgt_in"]))
        alone, _ = origin(_t(batch["src"][1:2, :1]), _t(batch["tgt_in"][1:2]))
    assert float((leaky[1] - alone[0]).abs().max()) > 1e-4  # the seed itself is not padding-invariant
    for row, n in enumerate(batch["src_lengths"]):
        with torch.no_grad():
            ref, _ = origin(_t(batch["src"][row:row + 1, :n]), _t(batch["tgt_in"][row:row + 1]))
        assert float(np.abs(logits[row] - ref[0].numpy()).max()) <= 1e-5
