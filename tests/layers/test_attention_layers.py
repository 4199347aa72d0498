"""Attention layers against their formulas written out the way the origins compute them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.layers.attention import (
    AdditiveAttention,
    LocationAttention,
    LuongAttention,
    masked_softmax,
    weighted_sum,
)

B, S, T, DQ, DK, F = 3, 6, 4, 5, 7, 8
LENGTHS = np.array([6, 1, 3], np.int32)
MASK = np.arange(S)[None, :] < LENGTHS[:, None]


def _data(seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, T, DQ)).astype(np.float32)
    memory = rng.standard_normal((B, S, DK)).astype(np.float32)
    memory[~MASK] = 0.0
    return q, memory


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_masked_softmax_zero_on_padding_and_softmax_on_the_rest():
    scores = np.random.default_rng(1).standard_normal((B, T, S)).astype(np.float32)
    for s in (scores, scores[:, 0]):
        w = np.asarray(masked_softmax(jnp.asarray(s), jnp.asarray(MASK)))
        mask = MASK if s.ndim == 2 else np.broadcast_to(MASK[:, None], s.shape)
        assert np.all(w[~mask] == 0.0)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-6)
        for b in range(B):
            n = LENGTHS[b]
            np.testing.assert_allclose(w[b, ..., :n], _softmax(s[b, ..., :n]), atol=1e-6)


def _apply(module, params, method, *args, **kw):
    return module.apply({"params": params}, *args, method=method, **kw)


def _init(module, q, memory):
    def both(m, q, memory):
        return m(q, m.keys(memory), memory, jnp.asarray(MASK))

    return module.init(jax.random.key(0), q, memory, method=both).get("params", {})


@pytest.mark.parametrize("layout", ["concat_qk", "concat_kq", "separate"])
def test_additive_matches_the_concatenated_linear(layout):
    q, memory = _data()
    att = AdditiveAttention(DQ, DK, F, layout, use_bias=layout != "separate")
    params = _init(att, q[:, 0], memory)
    keys = _apply(att, params, "keys", memory)
    ctx, w = _apply(att, params, None, q[:, 0], keys, memory, MASK)

    # The origin: repeat the query over S, concatenate in the origin's order, one Linear, tanh, v.
    rep = np.repeat(q[:, :1], S, axis=1)
    if layout == "separate":
        energy = rep @ np.asarray(params["W_q"]["kernel"]) + memory @ np.asarray(params["W_k"]["kernel"])
    else:
        cat = np.concatenate([rep, memory] if layout == "concat_qk" else [memory, rep], axis=-1)
        energy = cat @ np.asarray(params["kernel"]) + np.asarray(params["bias"])
    scores = (np.tanh(energy) @ np.asarray(params["v"]["kernel"]))[..., 0]
    expected = _softmax(np.where(MASK, scores, -np.inf))
    np.testing.assert_allclose(w, expected, atol=1e-6)
    np.testing.assert_allclose(ctx, np.einsum("bs,bsd->bd", expected, memory), atol=1e-5)
    assert np.all(np.asarray(w)[~MASK] == 0.0)

    # All T queries at once equal T single-step calls.
    ctx_all, w_all = _apply(att, params, None, q, keys, memory, MASK)
    for t in range(T):
        ctx_t, w_t = _apply(att, params, None, q[:, t], keys, memory, MASK)
        np.testing.assert_allclose(w_all[:, t], w_t, atol=1e-6)
        np.testing.assert_allclose(ctx_all[:, t], ctx_t, atol=1e-6)


def test_additive_dropout_drops_context_weights_not_returned_weights():
    q, memory = _data()
    att = AdditiveAttention(DQ, DK, F, "separate", use_bias=False, dropout=0.5)
    params = _init(att, q[:, 0], memory)
    keys = _apply(att, params, "keys", memory)
    ctx, w = _apply(att, params, None, q[:, 0], keys, memory, MASK)
    ctx_tr, w_tr = _apply(att, params, None, q[:, 0], keys, memory, MASK, train=True,
                          rngs={"dropout": jax.random.key(3)})
    np.testing.assert_allclose(w_tr, w, atol=1e-7)
    assert np.abs(np.asarray(ctx_tr) - np.asarray(ctx)).max() > 1e-3


@pytest.mark.parametrize("kind", ["dot", "general"])
def test_luong_scores(kind):
    q, memory = _data()
    memory = memory[..., :DQ]  # Luong compares states of one width
    att = LuongAttention(kind, DQ)
    params = _init(att, q[:, 0], memory)
    keys = _apply(att, params, "keys", memory)
    ctx_all, w_all = _apply(att, params, None, q, keys, memory, MASK)
    proj = memory @ np.asarray(params["W_a"]["kernel"]) if kind == "general" else memory
    scores = np.einsum("btd,bsd->bts", q, proj)
    expected = _softmax(np.where(MASK[:, None], scores, -np.inf))
    np.testing.assert_allclose(w_all, expected, atol=1e-6)
    np.testing.assert_allclose(ctx_all, np.einsum("bts,bsd->btd", expected, memory), atol=1e-5)
    ctx_0, w_0 = _apply(att, params, None, q[:, 0], keys, memory, MASK)
    np.testing.assert_allclose(w_0, w_all[:, 0], atol=1e-6)


def test_location_attention_spreads_over_all_max_len_positions():
    max_len, e, h = 10, 4, 5
    rng = np.random.default_rng(2)
    emb, hid = rng.standard_normal((B, e)).astype(np.float32), rng.standard_normal((B, h)).astype(np.float32)
    values = np.zeros((B, max_len, h), np.float32)
    values[:, :S] = rng.standard_normal((B, S, h))
    att = LocationAttention(e + h, max_len)
    params = att.init(jax.random.key(0), emb, hid, values)["params"]
    ctx, w = att.apply({"params": params}, emb, hid, values)
    score = {k: np.asarray(v) for k, v in params["score"].items()}
    logits = np.concatenate([emb, hid], -1) @ score["kernel"] + score["bias"]
    np.testing.assert_allclose(w, _softmax(logits), atol=1e-6)
    np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)
    assert np.all(np.asarray(w)[:, S:] > 0.0)  # faithful: no mask, padding positions get weight
    np.testing.assert_allclose(ctx, np.einsum("bs,bsd->bd", _softmax(logits), values), atol=1e-5)


def test_weighted_sum_shapes():
    w = jnp.ones((B, T, S)) / S
    v = jnp.arange(B * S * 2, dtype=jnp.float32).reshape(B, S, 2)
    assert weighted_sum(w, v).shape == (B, T, 2)
    assert weighted_sum(w[:, 0], v).shape == (B, 2)
    np.testing.assert_allclose(weighted_sum(w[:, 0], v), np.asarray(v).mean(1), atol=1e-5)
