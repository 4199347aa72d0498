"""Original attention checkpoints load into torch_ref and reproduce the origin in Flax.

The origin layer definitions are written out here as the tutorials have them (sequence-first,
one token at a time where they do that): bentrevett/pytorch-seq2seq tutorial 4 (packed
sequences, masking; attention named attn_fc / v_fc), d2l's Seq2SeqEncoder + seed 003's
Seq2SeqAttentionDecoder with d2l's AdditiveAttention and masked_softmax, seed 000's
PyTorch-tutorial EncoderRNN / AttnDecoderRNN (batch 1), and seed 002's Attention in a GRU
decoder. Each test builds the original model, takes its state_dict, loads it strictly into
torch_ref, converts it with `torch_to_flax`, and compares Flax with the origin (<= 1e-5).
"""

import random

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import torch_ref
from s2s_jax import build_model, presets
from s2s_jax.layers.attention import AdditiveAttention as FlaxAdditive
from tests.helpers import random_batch
from torch_ref.convert import torch_to_flax

ATOL = 1e-5
TINY = dict(src_vocab_size=13, tgt_vocab_size=11, emb_dim=6, hid_dim=8)


def _import(cfg, original: nn.Module):
    """Strict load of the original state_dict into torch_ref, then the Flax params."""
    state = original.state_dict()
    mirror = torch_ref.build_model(cfg)
    mirror.load_state_dict(state, strict=True)
    return mirror.eval(), torch_to_flax(cfg, state)


def _flax(cfg, params, src, lengths, tgt_in):
    model = build_model(cfg)
    v = {"params": params}
    enc = model.apply(v, np.asarray(src, np.int32), np.asarray(lengths, np.int32), method="encode")
    logits, weights = model.apply(v, enc, np.asarray(tgt_in, np.int32), return_attention=True, method="decode")
    return np.asarray(logits), np.asarray(weights)


def _long(*arrays):
    return [torch.from_numpy(np.asarray(a).astype(np.int64)) for a in arrays]


# --- bentrevett/pytorch-seq2seq tutorial 4 -------------------------------------------------------


class BtEncoder(nn.Module):
    def __init__(self, input_dim, emb_dim, enc_hid_dim, dec_hid_dim, dropout):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, emb_dim)
        self.rnn = nn.GRU(emb_dim, enc_hid_dim, bidirectional=True)
        self.fc = nn.Linear(enc_hid_dim * 2, dec_hid_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src, src_len):
        embedded = self.dropout(self.embedding(src))
        packed_embedded = nn.utils.rnn.pack_padded_sequence(embedded, src_len.to("cpu"))
        packed_outputs, hidden = self.rnn(packed_embedded)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(packed_outputs)
        hidden = torch.tanh(self.fc(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1)))
        return outputs, hidden


class BtAttention(nn.Module):
    def __init__(self, enc_hid_dim, dec_hid_dim):
        super().__init__()
        self.attn_fc = nn.Linear((enc_hid_dim * 2) + dec_hid_dim, dec_hid_dim)
        self.v_fc = nn.Linear(dec_hid_dim, 1, bias=False)

    def forward(self, hidden, encoder_outputs, mask):
        src_len = encoder_outputs.shape[0]
        hidden = hidden.unsqueeze(1).repeat(1, src_len, 1)
        encoder_outputs = encoder_outputs.permute(1, 0, 2)
        energy = torch.tanh(self.attn_fc(torch.cat((hidden, encoder_outputs), dim=2)))
        attention = self.v_fc(energy).squeeze(2)
        attention = attention.masked_fill(mask == 0, -1e10)
        return F.softmax(attention, dim=1)


class BtDecoder(nn.Module):
    def __init__(self, output_dim, emb_dim, enc_hid_dim, dec_hid_dim, dropout, attention):
        super().__init__()
        self.output_dim = output_dim
        self.attention = attention
        self.embedding = nn.Embedding(output_dim, emb_dim)
        self.rnn = nn.GRU((enc_hid_dim * 2) + emb_dim, dec_hid_dim)
        self.fc_out = nn.Linear((enc_hid_dim * 2) + dec_hid_dim + emb_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input, hidden, encoder_outputs, mask):
        input = input.unsqueeze(0)
        embedded = self.dropout(self.embedding(input))
        a = self.attention(hidden, encoder_outputs, mask)
        a = a.unsqueeze(1)
        encoder_outputs = encoder_outputs.permute(1, 0, 2)
        weighted = torch.bmm(a, encoder_outputs)
        weighted = weighted.permute(1, 0, 2)
        rnn_input = torch.cat((embedded, weighted), dim=2)
        output, hidden = self.rnn(rnn_input, hidden.unsqueeze(0))
        embedded = embedded.squeeze(0)
        output = output.squeeze(0)
        weighted = weighted.squeeze(0)
        prediction = self.fc_out(torch.cat((output, weighted, embedded), dim=1))
        return prediction, hidden.squeeze(0), a.squeeze(1)


class BtSeq2Seq(nn.Module):
    def __init__(self, encoder, decoder, src_pad_idx):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.src_pad_idx = src_pad_idx

    def create_mask(self, src):
        return (src != self.src_pad_idx).permute(1, 0)

    def forward(self, src, src_len, trg, teacher_forcing_ratio=0.5):
        batch_size = src.shape[1]
        trg_len = trg.shape[0]
        outputs = torch.zeros(trg_len, batch_size, self.decoder.output_dim)
        encoder_outputs, hidden = self.encoder(src, src_len)
        input = trg[0, :]
        mask = self.create_mask(src)
        for t in range(1, trg_len):
            output, hidden, _ = self.decoder(input, hidden, encoder_outputs, mask)
            outputs[t] = output
            teacher_force = random.random() < teacher_forcing_ratio
            top1 = output.argmax(1)
            input = trg[t] if teacher_force else top1
        return outputs


def test_bentrevett_tutorial4_checkpoint():
    cfg = presets.get("bentrevett-attention", **TINY)
    torch.manual_seed(0)
    attn = BtAttention(cfg.hid_dim, cfg.hid_dim)
    enc = BtEncoder(cfg.src_vocab_size, cfg.emb_dim, cfg.hid_dim, cfg.hid_dim, cfg.dropout)
    dec = BtDecoder(cfg.tgt_vocab_size, cfg.emb_dim, cfg.hid_dim, cfg.hid_dim, cfg.dropout, attn)
    original = BtSeq2Seq(enc, dec, cfg.pad_id).eval()
    mirror, params = _import(cfg, original)

    # Tutorial 4 batches are sorted by source length (pack_padded_sequence's default).
    batch = random_batch(cfg, seed=3, batch=4, src_len=7, tgt_len=6, src_lengths=[7, 5, 3, 1])
    trg = np.concatenate([batch["tgt_in"], np.full((4, 1), cfg.eos_id, np.int32)], axis=1)
    src_t, len_t, trg_t = _long(batch["src"].T, batch["src_lengths"], trg.T)
    with torch.no_grad():
        expected = original(src_t, len_t, trg_t, teacher_forcing_ratio=1.0)[1:].permute(1, 0, 2).numpy()
        # The attention vectors, collected as the tutorial's translate_sentence does.
        enc_out, hidden = original.encoder(src_t, len_t)
        mask, weights = original.create_mask(src_t), []
        for t in range(trg_t.shape[0] - 1):
            _, hidden, a = original.decoder(trg_t[t], hidden, enc_out, mask)
            weights.append(a)
        expected_w = torch.stack(weights, dim=1).numpy()
        mirrored = mirror(*_long(batch["src"], batch["src_lengths"], batch["tgt_in"])).numpy()

    logits, w = _flax(cfg, params, batch["src"], batch["src_lengths"], batch["tgt_in"])
    err = np.abs(logits - expected).max()
    print(f"bentrevett-attention vs origin: logits {err:.2e}, attention {np.abs(w - expected_w).max():.2e}")
    assert err <= ATOL
    assert np.abs(w - expected_w).max() <= ATOL
    assert np.abs(mirrored - expected).max() <= ATOL


# --- d2l (seed 003) ----------------------------------------------------------------------------


class D2lEncoder(nn.Module):
    """The base encoder interface for the encoder-decoder architecture."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class D2lDecoder(nn.Module):
    """The base decoder interface for the encoder-decoder architecture."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def init_state(self, enc_outputs, *args):
        raise NotImplementedError


class AttentionDecoder(D2lDecoder):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)


class EncoderDecoder(nn.Module):
    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, enc_X, dec_X, *args):
        enc_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_outputs, *args)
        return self.decoder(dec_X, dec_state)


def sequence_mask(X, valid_len, value=0):
    maxlen = X.size(1)
    mask = torch.arange((maxlen), dtype=torch.float32, device=X.device)[None, :] < valid_len[:, None]
    X[~mask] = value
    return X


def masked_softmax(X, valid_lens):
    if valid_lens is None:
        return nn.functional.softmax(X, dim=-1)
    shape = X.shape
    if valid_lens.dim() == 1:
        valid_lens = torch.repeat_interleave(valid_lens, shape[1])
    else:
        valid_lens = valid_lens.reshape(-1)
    X = sequence_mask(X.reshape(-1, shape[-1]), valid_lens, value=-1e6)
    return nn.functional.softmax(X.reshape(shape), dim=-1)


class D2lAdditiveAttention(nn.Module):
    def __init__(self, key_size, query_size, num_hiddens, dropout, **kwargs):
        super().__init__(**kwargs)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries, keys, values, valid_lens):
        queries, keys = self.W_q(queries), self.W_k(keys)
        features = queries.unsqueeze(2) + keys.unsqueeze(1)
        features = torch.tanh(features)
        scores = self.w_v(features).squeeze(-1)
        self.attention_weights = masked_softmax(scores, valid_lens)
        return torch.bmm(self.dropout(self.attention_weights), values)


class Seq2SeqEncoder(D2lEncoder):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, dropout=dropout)

    def forward(self, X, *args):
        X = self.embedding(X)
        X = X.permute(1, 0, 2)
        output, state = self.rnn(X)
        return output, state


class Seq2SeqAttentionDecoder(AttentionDecoder):
    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.attention = D2lAdditiveAttention(num_hiddens, num_hiddens, num_hiddens, dropout)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, enc_valid_lens, *args):
        outputs, hidden_state = enc_outputs
        return (outputs.permute(1, 0, 2), hidden_state, enc_valid_lens)

    def forward(self, X, state):
        enc_outputs, hidden_state, enc_valid_lens = state
        X = self.embedding(X).permute(1, 0, 2)
        outputs, self._attention_weights = [], []
        for x in X:
            query = torch.unsqueeze(hidden_state[-1], dim=1)
            context = self.attention(query, enc_outputs, enc_outputs, enc_valid_lens)
            x = torch.cat((context, torch.unsqueeze(x, dim=1)), dim=-1)
            out, hidden_state = self.rnn(x.permute(1, 0, 2), hidden_state)
            outputs.append(out)
            self._attention_weights.append(self.attention.attention_weights)
        outputs = self.dense(torch.cat(outputs, dim=0))
        return outputs.permute(1, 0, 2), [enc_outputs, hidden_state, enc_valid_lens]

    @property
    def attention_weights(self):
        return self._attention_weights


def test_d2l_additive_attention_layer_with_valid_lens():
    torch.manual_seed(0)
    original = D2lAdditiveAttention(key_size=5, query_size=4, num_hiddens=6, dropout=0.1).eval()
    queries, keys = torch.randn(3, 2, 4), torch.randn(3, 7, 5)
    valid_lens = torch.tensor([7, 1, 4])
    with torch.no_grad():
        context = original(queries, keys, keys, valid_lens).numpy()
    weights = original.attention_weights.numpy()

    sd = {k: v.numpy().T for k, v in original.state_dict().items()}
    params = {"W_q": {"kernel": sd["W_q.weight"]}, "W_k": {"kernel": sd["W_k.weight"]},
              "v": {"kernel": sd["w_v.weight"]}}
    layer = FlaxAdditive(4, 5, 6, "separate", use_bias=False, dropout=0.1)
    mask = np.arange(7)[None, :] < valid_lens.numpy()[:, None]
    k = layer.apply({"params": params}, keys.numpy(), method="keys")
    ctx, w = layer.apply({"params": params}, queries.numpy(), k, keys.numpy(), mask)
    assert np.abs(np.asarray(w) - weights).max() <= 1e-6
    assert np.abs(np.asarray(ctx) - context).max() <= ATOL


def test_d2l_bahdanau_checkpoint():
    cfg = presets.get("d2l-bahdanau", **TINY)
    torch.manual_seed(0)
    encoder = Seq2SeqEncoder(cfg.src_vocab_size, cfg.emb_dim, cfg.hid_dim, cfg.n_layers, cfg.dropout)
    decoder = Seq2SeqAttentionDecoder(cfg.tgt_vocab_size, cfg.emb_dim, cfg.hid_dim, cfg.n_layers, cfg.dropout)
    original = EncoderDecoder(encoder, decoder).eval()
    mirror, params = _import(cfg, original)
    batch = random_batch(cfg, seed=4, batch=4, src_len=7, tgt_len=5, src_lengths=[7, 1, 4, 6])
    logits, w = _flax(cfg, params, batch["src"], batch["src_lengths"], batch["tgt_in"])

    # d2l's encoder runs over padding, so an unpadded row is the origin's exact input: run each
    # row alone at its true length and compare with that row of the padded Flax batch.
    worst = 0.0
    for b, n in enumerate(batch["src_lengths"]):
        src_t, tgt_t = _long(batch["src"][b : b + 1, :n], batch["tgt_in"][b : b + 1])
        with torch.no_grad():
            out, _ = original(src_t, tgt_t, torch.tensor([int(n)]))
        expected_w = torch.cat(decoder.attention_weights, dim=1)[0].numpy()
        worst = max(worst, np.abs(logits[b] - out[0].numpy()).max())
        assert np.abs(w[b, :, :n] - expected_w).max() <= ATOL
    # A full-length batch: the same computation batched, with valid_lens.
    full = random_batch(cfg, seed=5, batch=3, src_len=6, tgt_len=5, src_lengths=[6, 6, 6])
    with torch.no_grad():
        out, _ = original(*_long(full["src"], full["tgt_in"], full["src_lengths"]))
        mirrored = mirror(*_long(full["src"], full["src_lengths"], full["tgt_in"])).numpy()
    full_logits, _ = _flax(cfg, params, full["src"], full["src_lengths"], full["tgt_in"])
    worst = max(worst, np.abs(full_logits - out.numpy()).max())
    print(f"d2l-bahdanau vs origin: logits {worst:.2e}")
    assert worst <= ATOL
    assert np.abs(mirrored - out.numpy()).max() <= ATOL


# --- PyTorch tutorial (seed 000) ---------------------------------------------------------------


class EncoderRNN(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size)

    def forward(self, input, hidden):
        embedded = self.embedding(input).view(1, 1, -1)
        output = embedded
        output, hidden = self.gru(output, hidden)
        return output, hidden

    def initHidden(self):
        return torch.zeros(1, 1, self.hidden_size)


class AttnDecoderRNN(nn.Module):
    def __init__(self, hidden_size, output_size, dropout_p=0.1, max_length=10):
        super().__init__()
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.dropout_p = dropout_p
        self.max_length = max_length
        self.embedding = nn.Embedding(self.output_size, self.hidden_size)
        self.attn = nn.Linear(self.hidden_size * 2, self.max_length)
        self.attn_combine = nn.Linear(self.hidden_size * 2, self.hidden_size)
        self.dropout = nn.Dropout(self.dropout_p)
        self.gru = nn.GRU(self.hidden_size, self.hidden_size)
        self.out = nn.Linear(self.hidden_size, self.output_size)

    def forward(self, x, hidden, encoder_outputs):
        embedded = self.embedding(x).view(1, 1, -1)
        embedded = self.dropout(embedded)
        attn_weights = F.softmax(self.attn(torch.cat([embedded[0], hidden[0]], 1)), dim=1)
        attn_applied = torch.bmm(attn_weights.unsqueeze(0), encoder_outputs.unsqueeze(0))
        output = torch.cat([embedded[0], attn_applied[0]], 1)
        output = self.attn_combine(output).unsqueeze(0)
        output = F.relu(output)
        output, hidden = self.gru(output, hidden)
        output = F.log_softmax(self.out(output[0]), dim=1)
        return output, hidden, attn_weights


class Pair(nn.Module):
    """Seeds 000 and 002 keep encoder and decoder apart; a checkpoint of both is this state_dict."""

    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


def _tutorial_teacher_forced(encoder, decoder, src, tgt_in, max_length):
    """The tutorial's train() loop for one pair (teacher forcing), returning outputs and weights."""
    encoder_hidden = encoder.initHidden()
    encoder_outputs = torch.zeros(max_length, encoder.hidden_size)
    for ei in range(src.size(0)):
        encoder_output, encoder_hidden = encoder(src[ei], encoder_hidden)
        encoder_outputs[ei] = encoder_output[0, 0]
    decoder_hidden = encoder_hidden
    outputs, weights = [], []
    for di in range(tgt_in.size(0)):
        decoder_output, decoder_hidden, decoder_attention = decoder(tgt_in[di], decoder_hidden, encoder_outputs)
        outputs.append(decoder_output[0])
        weights.append(decoder_attention[0])
    return torch.stack(outputs).numpy(), torch.stack(weights).numpy()


def test_pytorch_tutorial_checkpoint():
    cfg = presets.get("tutorial-attn", **dict(TINY, emb_dim=8))
    torch.manual_seed(0)
    encoder = EncoderRNN(cfg.src_vocab_size, cfg.hid_dim)
    decoder = AttnDecoderRNN(cfg.hid_dim, cfg.tgt_vocab_size, cfg.dropout, cfg.max_len)
    original = Pair(encoder, decoder).eval()
    mirror, params = _import(cfg, original)
    batch = random_batch(cfg, seed=6, batch=4, src_len=cfg.max_len, tgt_len=5, src_lengths=[10, 1, 4, 7])
    logits, w = _flax(cfg, params, batch["src"], batch["src_lengths"], batch["tgt_in"])
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    with torch.no_grad():
        mirror_logp = F.log_softmax(mirror(*_long(batch["src"], batch["src_lengths"], batch["tgt_in"])), -1).numpy()
    worst = 0.0
    for b, n in enumerate(batch["src_lengths"]):
        src_t, tgt_t = _long(batch["src"][b, :n], batch["tgt_in"][b])
        with torch.no_grad():
            expected, expected_w = _tutorial_teacher_forced(encoder, decoder, src_t, tgt_t, cfg.max_len)
        worst = max(worst, np.abs(logp[b] - expected).max())
        assert np.abs(w[b] - expected_w).max() <= ATOL
        assert np.abs(mirror_logp[b] - expected).max() <= ATOL
    print(f"tutorial-attn vs origin: log-probs {worst:.2e}")
    assert worst <= ATOL


# --- seed 002 ------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, hidden_size):
        super().__init__()
        self.W_a = nn.Linear(hidden_size * 2, hidden_size)
        self.v_a = nn.Linear(hidden_size, 1, bias=False)

    def forward(self, encoder_hidden_states, decoder_hidden_state):
        decoder_hidden_state_expanded = decoder_hidden_state.repeat(1, encoder_hidden_states.size(1), 1)
        inputs = torch.cat((encoder_hidden_states, decoder_hidden_state_expanded), 2)
        energy = torch.tanh(self.W_a(inputs))
        scores = self.v_a(energy).transpose(1, 2)
        softmax_scores = torch.softmax(scores, dim=2)
        context_vector = torch.bmm(softmax_scores, encoder_hidden_states)
        return context_vector, softmax_scores


class Seed002Encoder(nn.Module):
    """Seed 002's Encoder, also returning the GRU output (the attention reads every step's)."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.embedding = nn.Embedding(input_size, hidden_size)
        self.gru = nn.GRU(hidden_size, hidden_size)

    def forward(self, input_char, hidden):
        embedded = self.embedding(input_char).view(1, 1, -1)
        output, hidden = self.gru(embedded, hidden)
        return output, hidden


class Seed002AttnDecoder(nn.Module):
    """Seed 002's Decoder with its Attention: query = previous hidden state, GRU on [emb; context]."""

    def __init__(self, hidden_size, output_size):
        super().__init__()
        self.embedding = nn.Embedding(output_size, hidden_size)
        self.attention = Attention(hidden_size)
        self.gru = nn.GRU(hidden_size * 2, hidden_size)
        self.out = nn.Linear(hidden_size, output_size)
        self.logsoftmax = nn.LogSoftmax(dim=1)

    def forward(self, input_char, hidden, encoder_hidden_states):
        embedded = self.embedding(input_char).view(1, 1, -1)
        context, weights = self.attention(encoder_hidden_states, hidden.permute(1, 0, 2))
        output, hidden = self.gru(torch.cat((embedded, context), 2), hidden)
        return self.logsoftmax(self.out(output[0])), hidden, weights


CHARS = "0123456789+_{}"


def _ids(strings):
    return np.array([[CHARS.index(ch) for ch in s] for s in strings], np.int32)


def test_seed002_attention_checkpoint():
    cfg = presets.get("addition-attn", emb_dim=8, hid_dim=8)
    torch.manual_seed(0)
    original = Pair(Seed002Encoder(len(CHARS), cfg.hid_dim), Seed002AttnDecoder(cfg.hid_dim, len(CHARS)))
    original.eval()
    mirror, params = _import(cfg, original)
    src = _ids(["12+34}", "__2+3}", "67+89}"])
    tgt_in = _ids(["{_46", "{__5", "{156"])
    lengths = np.full(3, src.shape[1], np.int32)
    logits, w = _flax(cfg, params, src, lengths, tgt_in)
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    with torch.no_grad():
        mirror_logp = F.log_softmax(mirror(*_long(src, lengths, tgt_in)), -1).numpy()
    worst = 0.0
    for b in range(3):
        src_t, tgt_t = _long(src[b], tgt_in[b])
        with torch.no_grad():
            hidden, states = torch.zeros(1, 1, cfg.hid_dim), []
            for ch in src_t:
                out, hidden = original.encoder(ch, hidden)
                states.append(out[0])
            states = torch.cat(states, dim=0)[None]  # [1, seq_len, hidden]
            outputs, weights = [], []
            for ch in tgt_t:
                out, hidden, a = original.decoder(ch, hidden, states)
                outputs.append(out[0])
                weights.append(a[0, 0])
        worst = max(worst, np.abs(logp[b] - torch.stack(outputs).numpy()).max())
        assert np.abs(w[b] - torch.stack(weights).numpy()).max() <= ATOL
        assert np.abs(mirror_logp[b] - torch.stack(outputs).numpy()).max() <= ATOL
    print(f"addition-attn vs origin: log-probs {worst:.2e}")
    assert worst <= ATOL
