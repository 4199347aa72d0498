"""Transformer presets at tiny sizes beyond the model contract: layouts, KV cache, limits, dropout, beam reorders.

Parity, KV-cached step == full pass over 50 steps (JAX and torch), padding invariance and the shared-encoder
step of every preset are in tests/contract/test_presets.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import s2s_jax.models
from s2s_jax import build_model, presets
from s2s_jax.models.transformer import REORDER_BLOCK, reorder_prefix
from tests.helpers import (
    init_params,
    logits_of,
    random_batch,
    search_beams,
)

TINY = dict(src_vocab_size=13, tgt_vocab_size=13, hid_dim=16, n_layers=2, n_heads=2, ff_dim=32, max_len=64,
            pad_id=1, bos_id=2, eos_id=0)
CASES = {
    "bentrevett-transformer": presets.get("bentrevett-transformer", **TINY),
    "transformer": presets.get("transformer", **TINY),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    cfg = CASES[request.param]
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5)
    return cfg, init_params(cfg, batch), batch


def test_layouts():
    """Post-LN has no final norms; pre-LN has them; tied embeddings drop fc_out; sinusoids drop pos_embedding."""
    batch = random_batch(CASES["transformer"], batch=2, src_len=3, tgt_len=2)
    old = init_params(CASES["bentrevett-transformer"], batch)
    new = init_params(CASES["transformer"], batch)
    assert {"fc_out", "pos_embedding"} <= set(old["decoder"]) and "layer_norm" not in old["decoder"]
    assert "layer_norm" in new["encoder"] and "layer_norm" in new["decoder"]
    assert not {"fc_out", "pos_embedding"} & set(new["decoder"])


def test_kv_cache_state_layout():
    """Batch on axis 0 of every state array; caches [B, heads, max_decode_len, head_dim]."""
    cfg = CASES["transformer"]
    batch = random_batch(cfg, batch=3, src_len=5, tgt_len=2)
    params = init_params(cfg, batch)
    model, v = build_model(cfg), {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    assert enc.cross_k[0].shape == (3, cfg.n_heads, 5, cfg.hid_dim // cfg.n_heads)
    state = model.apply(v, enc, 12, method="init_decode_state")
    assert state.keys[1].shape == (3, cfg.n_heads, 12, cfg.hid_dim // cfg.n_heads) and state.pos.shape == (3,)
    logits, state = model.apply(v, enc, batch["tgt_in"][:, 0], state, method="decode_step")
    assert np.asarray(state.pos).tolist() == [1, 1, 1] and logits.shape == (3, cfg.tgt_vocab_size)
    # past the cache: NaN, never silently wrong
    logits, _ = model.apply(v, enc, batch["tgt_in"][:, 0], state.replace(pos=state.pos + 11), method="decode_step")
    assert bool(jnp.all(jnp.isnan(logits)))


def test_learned_positions_limit_is_a_clear_error():
    cfg = presets.get("bentrevett-transformer", **{**TINY, "max_len": 6})
    model = build_model(cfg)
    ok = random_batch(cfg, batch=2, src_len=6, tgt_len=6)
    params = model.init(jax.random.key(0), ok["src"], ok["src_lengths"], ok["tgt_in"])
    long = random_batch(cfg, batch=2, src_len=7, tgt_len=7)
    with pytest.raises(ValueError, match="source length 7 exceeds .*max_len=6"):
        model.apply(params, long["src"], long["src_lengths"], method="encode")
    enc = model.apply(params, ok["src"], ok["src_lengths"], method="encode")
    with pytest.raises(ValueError, match="target length 7 exceeds .*max_len=6"):
        model.apply(params, enc, long["tgt_in"], method="decode")


def test_sinusoidal_positions_have_no_limit():
    cfg = presets.get("transformer", **{**TINY, "max_len": 4})
    batch = random_batch(cfg, batch=2, src_len=9, tgt_len=9)
    logits = logits_of(cfg, init_params(cfg, batch), batch)
    assert logits.shape == (2, 9, cfg.tgt_vocab_size) and np.isfinite(logits).all()


def test_train_mode_applies_dropout(case):
    cfg, params, batch = case
    model = build_model(cfg)
    args = ({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    a = model.apply(*args, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(*args, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.asarray(a)).all() and float(jnp.abs(a - model.apply(*args)).max()) > 1e-3


@pytest.mark.parametrize("used", [0, 5, 16, 17, 20, 21, 30])
def test_reorder_prefix_gathers_written_positions_only(used):
    """Positions < used come from the parent rows; blocks past them are not touched (21 positions = two blocks
    of 8 and a last one clamped inside the cache, whose overlap must not be gathered twice)."""
    cache = jnp.asarray(np.random.default_rng(used).normal(size=(6, 2, 21, 3)), jnp.float32)
    rows = jnp.array([1, 1, 0, 5, 3, 3])
    out = np.asarray(jax.jit(reorder_prefix)(cache, rows, used))
    n, untouched = min(used, 21), -(-used // REORDER_BLOCK) * REORDER_BLOCK
    np.testing.assert_array_equal(out[:, :, :n], np.asarray(cache)[np.asarray(rows)][:, :, :n])
    np.testing.assert_array_equal(out[:, :, untouched:], np.asarray(cache)[:, :, untouched:])


def test_beam_search_with_prefix_reorder_equals_whole_state_gather(case, monkeypatch):
    cfg, params, _ = case
    batch = random_batch(cfg, seed=5, batch=4, src_len=7, tgt_len=2)
    own = search_beams(cfg, params, batch, max_len=20)
    shrunk = search_beams(cfg, params, batch, max_len=20, shrink_rows=1)  # batch 4 -> 2 -> 1: compacted twice
    rec = s2s_jax.models.family(cfg)
    assert rec.reorders_state and rec.shared_encoder  # what `own` used
    monkeypatch.setitem(s2s_jax.models.FAMILIES, cfg.family,
                        dataclasses.replace(rec, shared_encoder=False, reorders_state=False))
    generic = search_beams(cfg, params, batch, max_len=20)  # whole-state gathers, encoder repeated per beam
    for other in (shrunk, generic):
        np.testing.assert_array_equal(own.tokens, other.tokens)
        np.testing.assert_array_equal(own.lengths, other.lengths)
        np.testing.assert_allclose(own.scores, other.scores, rtol=1e-6)
    assert int(own.lengths.max()) > 2 * REORDER_BLOCK  # the search reordered more than one block
