"""Original checkpoints of the RNN presets load into torch_ref and reproduce the origin's outputs in Flax.

The origin modules below are transcriptions of the original code (bentrevett/pytorch-seq2seq
tutorials 1 and 2, d2l `Seq2SeqEncoder/Decoder` as in seed 004 with d2l's `EncoderDecoder`,
seed 002's one-char-at-a-time GRU Encoder/Decoder), kept as the originals are: seq-first,
no lengths. For every origin:
- its state_dict loads into `torch_ref.build_model(cfg)` with `strict=True` (tiny and default sizes);
- `torch_to_flax(cfg, state_dict)` gives Flax params whose teacher-forced logits equal the
  origin's. The Flax model runs a padded ragged batch; the origin runs each row alone at its
  true length (it has no notion of padding), which is what lengths-awareness must reproduce.
"""

from __future__ import annotations

import random

import jax
import numpy as np
import pytest
import torch
from torch import nn

import torch_ref
from s2s_jax import build_model, presets
from torch_ref.convert import torch_to_flax

ATOL = 1e-5


# --- bentrevett/pytorch-seq2seq, tutorial 1 (Sutskever et al.) -----------------------------------

class LSTMEncoder(nn.Module):
    def __init__(self, input_dim, embedding_dim, hidden_dim, n_layers, dropout):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.embedding = nn.Embedding(input_dim, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, n_layers, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src):
        # src = [src length, batch size]
        embedded = self.dropout(self.embedding(src))
        outputs, (hidden, cell) = self.rnn(embedded)
        return hidden, cell


class LSTMDecoder(nn.Module):
    def __init__(self, output_dim, embedding_dim, hidden_dim, n_layers, dropout):
        super().__init__()
        self.output_dim = output_dim
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.embedding = nn.Embedding(output_dim, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, n_layers, dropout=dropout)
        self.fc_out = nn.Linear(hidden_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input, hidden, cell):
        input = input.unsqueeze(0)
        embedded = self.dropout(self.embedding(input))
        output, (hidden, cell) = self.rnn(embedded, (hidden, cell))
        prediction = self.fc_out(output.squeeze(0))
        return prediction, hidden, cell


class LSTMSeq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.device = device
        assert encoder.hidden_dim == decoder.hidden_dim
        assert encoder.n_layers == decoder.n_layers

    def forward(self, src, trg, teacher_forcing_ratio):
        batch_size = trg.shape[1]
        trg_length = trg.shape[0]
        trg_vocab_size = self.decoder.output_dim
        outputs = torch.zeros(trg_length, batch_size, trg_vocab_size).to(self.device)
        hidden, cell = self.encoder(src)
        input = trg[0, :]
        for t in range(1, trg_length):
            output, hidden, cell = self.decoder(input, hidden, cell)
            outputs[t] = output
            teacher_force = random.random() < teacher_forcing_ratio
            top1 = output.argmax(1)
            input = trg[t] if teacher_force else top1
        return outputs


# --- bentrevett/pytorch-seq2seq, tutorial 2 (Cho et al.) -----------------------------------------

class GRUEncoder(nn.Module):
    def __init__(self, input_dim, embedding_dim, hidden_dim, dropout):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.embedding = nn.Embedding(input_dim, embedding_dim)
        self.rnn = nn.GRU(embedding_dim, hidden_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src):
        embedded = self.dropout(self.embedding(src))
        outputs, hidden = self.rnn(embedded)
        return hidden


class GRUDecoder(nn.Module):
    def __init__(self, output_dim, embedding_dim, hidden_dim, dropout):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.output_dim = output_dim
        self.embedding = nn.Embedding(output_dim, embedding_dim)
        self.rnn = nn.GRU(embedding_dim + hidden_dim, hidden_dim)
        self.fc_out = nn.Linear(embedding_dim + hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input, hidden, context):
        input = input.unsqueeze(0)
        embedded = self.dropout(self.embedding(input))
        emb_con = torch.cat((embedded, context), dim=2)
        output, hidden = self.rnn(emb_con, hidden)
        output = torch.cat((embedded.squeeze(0), hidden.squeeze(0), context.squeeze(0)), dim=1)
        prediction = self.fc_out(output)
        return prediction, hidden


class GRUSeq2Seq(nn.Module):
    def __init__(self, encoder, decoder, device):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.device = device
        assert encoder.hidden_dim == decoder.hidden_dim

    def forward(self, src, trg, teacher_forcing_ratio):
        batch_size = trg.shape[1]
        trg_length = trg.shape[0]
        trg_vocab_size = self.decoder.output_dim
        outputs = torch.zeros(trg_length, batch_size, trg_vocab_size).to(self.device)
        context = self.encoder(src)
        hidden = context
        input = trg[0, :]
        for t in range(1, trg_length):
            output, hidden = self.decoder(input, hidden, context)
            outputs[t] = output
            teacher_force = random.random() < teacher_forcing_ratio
            top1 = output.argmax(1)
            input = trg[t] if teacher_force else top1
        return outputs


# --- d2l, as in seed 004 (plus d2l's EncoderDecoder) ---------------------------------------------

class Seq2SeqEncoder(nn.Module):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, dropout=dropout)

    def forward(self, X, *args):
        X = self.embedding(X)
        X = X.permute(1, 0, 2)
        output, state = self.rnn(X)
        return output, state


class Seq2SeqDecoder(nn.Module):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, *args):
        return enc_outputs[1]

    def forward(self, X, state):
        X = self.embedding(X).permute(1, 0, 2)
        context = state[-1].repeat(X.shape[0], 1, 1)
        X_and_context = torch.cat((X, context), 2)
        output, state = self.rnn(X_and_context, state)
        output = self.dense(output).permute(1, 0, 2)
        return output, state


class EncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, *args):
        enc_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_outputs, *args)
        return self.decoder(dec_X, dec_state)


# --- seed 002: the addition model, one character at a time ---------------------------------------

class Seed002Encoder(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size)

    def forward(self, input_char, hidden):
        embedded = self.embedding(input_char).view(1, 1, -1)
        _, hidden = self.gru(embedded, hidden)
        return hidden


class Seed002Decoder(nn.Module):
    def __init__(self, hidden_size, output_size):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)
        self.logsoftmax = nn.LogSoftmax(dim=1)

    def forward(self, input_char, hidden):
        embedded = self.embedding(input_char).view(1, 1, -1)
        output, hidden = self.gru(embedded, hidden)
        output = self.logsoftmax(self.out(output[0]))
        return output, hidden


class Seed002Seq2Seq:
    """Seed 002's `Seq2Seq` holds the two modules (it is not an nn.Module); its checkpoint is both."""

    def __init__(self, chars_number, hidden_size):
        self.hidden_size = hidden_size
        self.encoder = Seed002Encoder(chars_number, hidden_size)
        self.decoder = Seed002Decoder(hidden_size, chars_number)

    def state_dict(self):
        return {**{f"encoder.{k}": v for k, v in self.encoder.state_dict().items()},
                **{f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}}

    def teacher_forced(self, input_tensor, target_tensor, sos):
        """The seed's training loop without the loss: the decoder's LogSoftmax outputs, stacked."""
        hidden = torch.zeros(1, 1, self.hidden_size)
        for input in input_tensor:
            hidden = self.encoder(input, hidden)
        decoder_input = torch.tensor(sos)
        outputs = []
        for target in target_tensor:
            decoder_output, hidden = self.decoder(decoder_input, hidden)
            outputs.append(decoder_output[0])
            decoder_input = target
        return torch.stack(outputs)


# --- builders -----------------------------------------------------------------------------------

CHARS = "0123456789+_{}"  # seed 002's alphabet: '_' pads, '{' starts, '}' ends
SRC_V, TGT_V = 13, 11


def build_origin(name: str, emb: int, hid: int, src_v: int = SRC_V, tgt_v: int = TGT_V):
    """The origin model of preset `name` at the given sizes (dropout as in the origin's defaults)."""
    if name == "bentrevett-lstm":
        return LSTMSeq2Seq(LSTMEncoder(src_v, emb, hid, 2, 0.5), LSTMDecoder(tgt_v, emb, hid, 2, 0.5), "cpu")
    if name == "bentrevett-gru":
        return GRUSeq2Seq(GRUEncoder(src_v, emb, hid, 0.5), GRUDecoder(tgt_v, emb, hid, 0.5), "cpu")
    if name == "d2l-seq2seq":
        return EncoderDecoder(Seq2SeqEncoder(src_v, emb, hid, 2, 0.1), Seq2SeqDecoder(tgt_v, emb, hid, 2, 0.1))
    return Seed002Seq2Seq(len(CHARS), hid)


def tiny_cfg(name: str, **overrides):
    sizes = dict(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, emb_dim=6, hid_dim=8)
    if name == "addition-gru":
        sizes = dict(src_vocab_size=len(CHARS), tgt_vocab_size=len(CHARS), emb_dim=8, hid_dim=8,
                     pad_id=CHARS.index("_"), bos_id=CHARS.index("{"), eos_id=CHARS.index("}"))
    return presets.get(name, **sizes, **overrides)


def flax_logits(cfg, state_dict, src, lengths, tgt_in) -> np.ndarray:
    params = torch_to_flax(cfg, state_dict)
    out = build_model(cfg).apply({"params": params}, src, lengths, tgt_in)
    return np.asarray(out)


def ragged_batch(rng: np.random.Generator, lengths: list[int], src_len: int = 6, tgt_len: int = 5):
    src = rng.integers(3, SRC_V, (len(lengths), src_len)).astype(np.int32)
    src[np.arange(src_len)[None, :] >= np.array(lengths)[:, None]] = 0
    trg = rng.integers(3, TGT_V, (len(lengths), tgt_len)).astype(np.int32)
    trg[:, 0] = 1
    return src, np.array(lengths, np.int32), trg


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["bentrevett-lstm", "bentrevett-gru", "d2l-seq2seq", "addition-gru"])
def test_original_state_dict_loads_strict(name):
    torch.manual_seed(0)
    cfg = tiny_cfg(name)
    origin = build_origin(name, cfg.emb_dim, cfg.hid_dim)
    model = torch_ref.build_model(cfg)
    model.load_state_dict(origin.state_dict(), strict=True)
    assert set(model.state_dict()) == set(origin.state_dict())


@pytest.mark.parametrize("name", ["bentrevett-lstm", "bentrevett-gru"])
def test_bentrevett_outputs_reproduced(name):
    torch.manual_seed(1)
    cfg = tiny_cfg(name)
    origin = build_origin(name, cfg.emb_dim, cfg.hid_dim).eval()
    src, lengths, trg = ragged_batch(np.random.default_rng(2), [6, 1, 4])
    got = flax_logits(cfg, origin.state_dict(), src, lengths, trg[:, :-1])
    for b, n in enumerate(lengths):
        with torch.no_grad():  # the origin, seq-first, on the row alone at its true length
            want = origin(torch.from_numpy(src[b, :n, None]).long(), torch.from_numpy(trg[b, :, None]).long(), 1.0)
        np.testing.assert_allclose(got[b], want[1:, 0].numpy(), atol=ATOL)


def test_bentrevett_lstm_reverse_source_is_reversed_input():
    """reverse_source=True equals the origin fed the reversed sentence (Sutskever's trick)."""
    torch.manual_seed(3)
    cfg = tiny_cfg("bentrevett-lstm", reverse_source=True)
    origin = build_origin("bentrevett-lstm", cfg.emb_dim, cfg.hid_dim).eval()
    src, lengths, trg = ragged_batch(np.random.default_rng(4), [5, 2, 6])
    got = flax_logits(cfg, origin.state_dict(), src, lengths, trg[:, :-1])
    for b, n in enumerate(lengths):
        with torch.no_grad():
            rev = torch.from_numpy(src[b, :n][::-1].copy()[:, None]).long()
            want = origin(rev, torch.from_numpy(trg[b, :, None]).long(), 1.0)
        np.testing.assert_allclose(got[b], want[1:, 0].numpy(), atol=ATOL)


def test_d2l_outputs_reproduced():
    torch.manual_seed(5)
    cfg = tiny_cfg("d2l-seq2seq")
    origin = build_origin("d2l-seq2seq", cfg.emb_dim, cfg.hid_dim).eval()
    src, lengths, trg = ragged_batch(np.random.default_rng(6), [6, 3, 1])
    got = flax_logits(cfg, origin.state_dict(), src, lengths, trg)
    with torch.no_grad():  # whole-sequence (training) mode: context = the encoder's top final state
        full, _ = origin(torch.from_numpy(src[:1]).long(), torch.from_numpy(trg[:1]).long())
    np.testing.assert_allclose(got[0], full[0].numpy(), atol=ATOL)  # a full-length row, batched as d2l trains
    for b, n in enumerate(lengths):
        with torch.no_grad():
            want, _ = origin(torch.from_numpy(src[b:b + 1, :n]).long(), torch.from_numpy(trg[b:b + 1]).long())
        np.testing.assert_allclose(got[b], want[0].numpy(), atol=ATOL)


def test_seed002_outputs_reproduced():
    torch.manual_seed(7)
    cfg = tiny_cfg("addition-gru")
    origin = Seed002Seq2Seq(len(CHARS), cfg.hid_dim)
    pairs = [("12+34}", "_46}"), ("2+3}", "__5}"), ("67+89}", "156}")]  # the second left unpadded: ragged
    enc = [[CHARS.index(ch) for ch in s] for s, _ in pairs]
    lengths = np.array([len(s) for s in enc], np.int32)
    src = np.full((len(pairs), lengths.max()), cfg.pad_id, np.int32)
    for b, s in enumerate(enc):
        src[b, :len(s)] = s
    targets = np.array([[CHARS.index(ch) for ch in t] for _, t in pairs], np.int32)
    tgt_in = np.concatenate([np.full((len(pairs), 1), cfg.bos_id, np.int32), targets[:, :-1]], axis=1)
    got = np.asarray(jax.nn.log_softmax(flax_logits(cfg, origin.state_dict(), src, lengths, tgt_in), axis=-1))
    for b in range(len(pairs)):
        with torch.no_grad():
            want = origin.teacher_forced(torch.tensor(enc[b]), torch.from_numpy(targets[b]).long(), cfg.bos_id)
        np.testing.assert_allclose(got[b], want.numpy(), atol=ATOL)


@pytest.mark.parametrize("name", ["bentrevett-lstm", "bentrevett-gru", "d2l-seq2seq", "addition-gru"])
def test_default_size_shapes_match_origin(name):
    """At the origins' default sizes: same keys and shapes, strict load, and Flax shapes from the table."""
    src_v, tgt_v = (len(CHARS), len(CHARS)) if name == "addition-gru" else (53, 47)
    cfg = presets.get(name, src_vocab_size=src_v, tgt_vocab_size=tgt_v)
    origin = build_origin(name, cfg.emb_dim, cfg.hid_dim, src_v, tgt_v)
    want = {k: tuple(v.shape) for k, v in origin.state_dict().items()}
    model = torch_ref.build_model(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == want
    model.load_state_dict(origin.state_dict(), strict=True)
    params = torch_to_flax(cfg, origin.state_dict())
    x = np.ones((1, 3), np.int32)
    shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), x, np.array([3], np.int32), x)["params"]
    assert jax.tree.map(lambda a: tuple(a.shape), params) == jax.tree.map(lambda a: tuple(a.shape), shapes)
    if name == "bentrevett-gru":
        assert want["decoder.rnn.weight_ih_l0"] == (1536, 768)
        assert want["decoder.fc_out.weight"] == (tgt_v, 256 + 2 * 512)
