"""The attention family beyond the model contract: attention weights, its torch mirror's weights, dropout, limits.

Parity, step == full (JAX and torch), padding invariance and the shared-encoder step of every preset and of
the Luong variants below are in tests/contract/test_presets.py.
"""

import functools

import jax
import numpy as np
import pytest
import torch

import torch_ref
from s2s_jax import ConfigError, build_model, presets
from s2s_jax.errors import UserError
from tests.helpers import init_params, random_batch
from torch_ref.convert import flax_to_torch

TINY = dict(emb_dim=6, hid_dim=8, src_vocab_size=13, tgt_vocab_size=11)
ONE_WIDTH = dict(emb_dim=8, hid_dim=8)
CASES = {
    "bentrevett-attention": ("bentrevett-attention", TINY),
    "d2l-bahdanau": ("d2l-bahdanau", TINY),
    "tutorial-attn": ("tutorial-attn", dict(TINY, **ONE_WIDTH)),
    "addition-attn": ("addition-attn", ONE_WIDTH),  # the preset's 14-char vocab and special ids
    "luong-general-feed-lstm": ("luong", TINY),
    "luong-dot-gru": ("luong", dict(TINY, attention="dot", input_feeding=False, cell="gru", n_layers=1)),
    "luong-concat-feed-gru": ("luong", dict(TINY, attention="concat", cell="gru")),
    "luong-general-lstm": ("luong", dict(TINY, input_feeding=False)),
}
MAXLEN_FREE = [k for k in CASES if k != "tutorial-attn"]


@functools.cache
def prepared(case: str):
    name, overrides = CASES[case]
    cfg = presets.get(name, **overrides)
    batch = random_batch(cfg, seed=1)
    return cfg, init_params(cfg, batch), batch


@functools.cache
def decoded(case: str):
    """(model, encoder output, logits, weights) of the case's batch, teacher-forced."""
    cfg, params, batch = prepared(case)
    model = build_model(cfg)
    v = {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    logits, weights = model.apply(v, enc, batch["tgt_in"], return_attention=True, method="decode")
    return model, enc, np.asarray(logits), np.asarray(weights)


@pytest.mark.parametrize("case", MAXLEN_FREE)
def test_attention_rows_sum_to_one_and_skip_padding(case):
    cfg, params, batch = prepared(case)
    _, _, _, w = decoded(case)
    b, t = batch["tgt_in"].shape
    assert w.shape == (b, t, batch["src"].shape[1])
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    pad = np.arange(w.shape[-1])[None, :] >= batch["src_lengths"][:, None]
    assert np.all(w.transpose(1, 0, 2)[:, pad] == 0.0)
    assert np.all(w[1, :, 0] == 1.0)  # row 1 has length 1: all weight on its only token


def test_tutorial_attention_spans_max_len_like_the_origin():
    cfg, params, batch = prepared("tutorial-attn")
    _, enc, _, w = decoded("tutorial-attn")
    assert w.shape == batch["tgt_in"].shape + (cfg.max_len,)
    np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    assert np.all(w[:, :, batch["src"].shape[1]:] > 0.0)  # no mask: padding positions get weight
    assert np.all(np.asarray(enc.outputs)[:, batch["src"].shape[1]:] == 0.0)  # ... on zero vectors


@pytest.mark.parametrize("case", CASES)
def test_step_state_carries_the_step_weights(case):
    cfg, params, batch = prepared(case)
    model, enc, _, w = decoded(case)
    v = {"params": params}
    state = model.apply(v, enc, method="init_decode_state")
    step = jax.jit(lambda e, tok, s: model.apply(v, e, tok, s, method="decode_step"))
    for t in range(batch["tgt_in"].shape[1]):
        _, state = step(enc, batch["tgt_in"][:, t], state)
        np.testing.assert_allclose(state.attention, w[:, t], atol=1e-6)
    assert all(x.shape[0] == batch["src"].shape[0] for x in jax.tree.leaves(state))  # batch on axis 0


@pytest.mark.parametrize("case", ["bentrevett-attention", "d2l-bahdanau", "addition-attn", "luong-general-lstm",
                                  "luong-concat-feed-gru"])
def test_decoder_reads_the_keys_projected_in_encode(case):
    cfg, params, batch = prepared(case)
    model, enc, logits, _ = decoded(case)
    noise = jax.random.normal(jax.random.key(5), enc.keys.shape)
    stale = enc.replace(keys=enc.keys + 3.0 * noise)
    changed = model.apply({"params": params}, stale, batch["tgt_in"], method="decode")
    assert np.abs(np.asarray(changed) - logits).max() > 1e-4


def test_torch_mirror_returns_the_same_weights():
    cfg, params, batch = prepared("bentrevett-attention")
    _, _, _, w = decoded("bentrevett-attention")
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    tmodel.eval()
    t = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}
    with torch.no_grad():
        _, tw = tmodel.decode(tmodel.encode(t["src"], t["src_lengths"]), t["tgt_in"], return_attention=True)
    np.testing.assert_allclose(tw.numpy(), w, atol=1e-6)


@pytest.mark.parametrize("case", ["bentrevett-attention", "d2l-bahdanau", "tutorial-attn"])
def test_dropout_is_active_in_training(case):
    # d2l: dropout on the attention weights and between layers, inside the scanned decoder.
    cfg, params, batch = prepared(case)
    model = build_model(cfg)
    args = (batch["src"], batch["src_lengths"], batch["tgt_in"])
    eval_out = model.apply({"params": params}, *args)
    train_out = model.apply({"params": params}, *args, train=True, rngs={"dropout": jax.random.key(0)})
    assert np.abs(np.asarray(train_out) - np.asarray(eval_out)).max() > 1e-3


def test_tutorial_rejects_a_source_longer_than_max_len():
    cfg, params, _ = prepared("tutorial-attn")
    long = random_batch(cfg, src_len=cfg.max_len + 1)
    model = build_model(cfg)
    with pytest.raises(UserError, match=r"source length 11 exceeds max_len=10"):
        model.apply({"params": params}, long["src"], long["src_lengths"], long["tgt_in"])
    tmodel = torch_ref.build_model(cfg)
    with pytest.raises(UserError, match=r"source length 11 exceeds max_len=10"):
        tmodel(*(torch.from_numpy(long[k].astype(np.int64)) for k in ("src", "src_lengths", "tgt_in")))


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("bentrevett-attention", dict(attention="dot"), "attention='dot' does not fit origin='bentrevett-attention'"),
        ("bentrevett-attention", dict(bidirectional=False), "bidirectional=False"),
        ("d2l-bahdanau", dict(cell="lstm"), "cell='lstm'"),
        ("tutorial-attn", dict(emb_dim=16), "emb_dim=16 must equal hid_dim=256"),
        ("addition-attn", dict(n_layers=2), "n_layers=2"),
        ("addition-attn", dict(input_feeding=True), "input_feeding=True"),
        ("luong", dict(attention="additive"), "attention='additive' does not fit Luong"),
        ("luong", dict(origin="bentrevett-gru"), "not an attention-family origin"),
    ],
)
def test_config_errors_name_the_field(name, overrides, message):
    cfg = presets.get(name, **overrides)
    with pytest.raises(ConfigError, match=message):
        build_model(cfg).init(jax.random.key(0), np.ones((1, 2), np.int32), np.array([2], np.int32),
                              np.ones((1, 2), np.int32))
    with pytest.raises(ConfigError, match=message):
        torch_ref.build_model(cfg)


def test_unknown_attention_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="attention='bilinear'"):
        presets.get("luong", attention="bilinear")


def test_preset_defaults_follow_the_origins():
    b = presets.get("bentrevett-attention")
    assert (b.emb_dim, b.hid_dim, b.dropout, b.bidirectional, b.cell) == (256, 512, 0.5, True, "gru")
    t = presets.get("tutorial-attn")
    assert (t.emb_dim, t.hid_dim, t.max_len, t.dropout) == (256, 256, 10, 0.1)
    a = presets.get("addition-attn")
    assert (a.src_vocab_size, a.pad_id, a.bos_id, a.eos_id, a.emb_dim == a.hid_dim) == (14, 11, 12, 13, True)
    d = presets.get("d2l-bahdanau")
    assert (d.emb_dim, d.hid_dim, d.n_layers, d.dropout) == (32, 32, 2, 0.1)
