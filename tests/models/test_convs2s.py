"""ConvS2S presets at tiny sizes beyond the model contract: causal padding, weight norm, limits, dropout, beams.

Parity, incremental step == full pass over 50 steps (JAX and torch), padding invariance and the shared-encoder
step of every preset (and of bentrevett-convs2s with pad_fill="zero") are in tests/contract/test_presets.py.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import s2s_jax.models
from s2s_jax import build_model, presets
from s2s_jax.layers.conv import grad_multiply
from tests.helpers import (
    init_params,
    logits_of,
    random_batch,
    search_beams,
)
from torch_ref.convert import flax_to_torch, torch_to_flax

# pad_id 1 (not 0) so the seed's pad-valued causal padding differs from zeros.
TINY = dict(src_vocab_size=13, tgt_vocab_size=13, emb_dim=8, hid_dim=16, n_layers=2, max_len=64,
            pad_id=1, bos_id=2, eos_id=0)
CASES = {
    "bentrevett-convs2s": presets.get("bentrevett-convs2s", **TINY),
    "bentrevett-convs2s-zero-fill": presets.get("bentrevett-convs2s", **TINY, pad_fill="zero"),
    "convs2s": presets.get("convs2s", **TINY),
}


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    cfg = CASES[request.param]
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=5)
    return cfg, init_params(cfg, batch), batch


def test_beam_search_with_shared_encoder_and_shrinking_equals_plain_search(case, monkeypatch):
    cfg, params, _ = case
    batch = random_batch(cfg, seed=5, batch=4, src_len=7, tgt_len=2)
    fast = search_beams(cfg, params, batch, max_len=12, shrink_rows=1)
    rec = s2s_jax.models.family(cfg)
    assert rec.shared_encoder  # what `fast` used
    monkeypatch.setitem(s2s_jax.models.FAMILIES, cfg.family, dataclasses.replace(rec, shared_encoder=False))
    plain = search_beams(cfg, params, batch, max_len=12)
    np.testing.assert_array_equal(fast.tokens, plain.tokens)
    np.testing.assert_allclose(fast.scores, plain.scores, rtol=1e-6)


def test_pad_fill_changes_the_causal_padding():
    """With pad_id != 0 the seed's pad-valued padding and zeros give different first-position logits."""
    cfg = CASES["bentrevett-convs2s"]
    batch = random_batch(cfg, batch=2, src_len=4, tgt_len=3)
    params = init_params(cfg, batch)
    zero = logits_of(cfg.replace(pad_fill="zero"), params, batch)
    assert np.abs(logits_of(cfg, params, batch) - zero)[:, 0].max() > 1e-3


def test_attention_weights_skip_padding():
    cfg = CASES["bentrevett-convs2s"]
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=4, src_lengths=[6, 1, 3])
    params = init_params(cfg, batch)
    model, v = build_model(cfg), {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    _, weights = model.apply(v, enc, batch["tgt_in"], method="decode", return_attention=True)
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-6)
    assert float(weights[1, :, 1:].max()) == 0.0 and float(weights[2, :, 3:].max()) == 0.0
    state = model.apply(v, enc, method="init_decode_state")
    _, _, step_weights = model.apply(v, enc, batch["tgt_in"][:, 0], state, method="decode_step",
                                     return_attention=True)
    np.testing.assert_allclose(np.asarray(step_weights), np.asarray(weights[:, 0]), atol=1e-6)


def test_weight_norm_layout_and_init():
    """fconv stores v and g; at init g = ||v|| per output channel, torch keys are weight_norm parametrizations."""
    cfg = CASES["convs2s"]
    batch = random_batch(cfg, batch=2, src_len=4, tgt_len=3)
    params = init_params(cfg, batch)
    conv = params["encoder"]["convs_0"]
    assert conv["v"].shape == (cfg.kernel_size, cfg.hid_dim, 2 * cfg.hid_dim) and conv["g"].shape == (1, 1, 32)
    np.testing.assert_allclose(conv["g"], jnp.sqrt(jnp.sum(conv["v"] ** 2, axis=(0, 1), keepdims=True)), rtol=1e-6)
    state = flax_to_torch(cfg, params)
    assert state["encoder.convs.0.parametrizations.weight.original0"].shape == (32, 1, 1)
    assert state["decoder.attn_hid2emb.1.parametrizations.weight.original1"].shape == (cfg.emb_dim, cfg.hid_dim)
    back = torch_to_flax(cfg, state)
    np.testing.assert_array_equal(back["decoder"]["fc_out"]["g"], params["decoder"]["fc_out"]["g"])


def test_grad_multiply_scales_only_the_gradient():
    x = jnp.arange(3.0)
    np.testing.assert_array_equal(grad_multiply(x, 0.25), x)
    np.testing.assert_allclose(jax.grad(lambda y: jnp.sum(grad_multiply(y, 0.25) ** 2))(x), 0.5 * x)


@pytest.mark.parametrize("name", ["bentrevett-convs2s", "convs2s"])
def test_positional_limit_is_a_clear_error(name):
    cfg = presets.get(name, **{**TINY, "max_len": 6})
    model = build_model(cfg)
    ok = random_batch(cfg, batch=2, src_len=6, tgt_len=6)
    params = model.init(jax.random.key(0), ok["src"], ok["src_lengths"], ok["tgt_in"])
    long = random_batch(cfg, batch=2, src_len=7, tgt_len=7)
    with pytest.raises(ValueError, match="source length 7 exceeds .*max_len=6"):
        model.apply(params, long["src"], long["src_lengths"], method="encode")
    enc = model.apply(params, ok["src"], ok["src_lengths"], method="encode")
    with pytest.raises(ValueError, match="target length 7 exceeds .*max_len=6"):
        model.apply(params, enc, long["tgt_in"], method="decode")
    # decode_step past the table: NaN, never a silently clamped position
    state = model.apply(params, enc, method="init_decode_state")
    logits, _ = model.apply(params, enc, ok["tgt_in"][:, 0], state.replace(pos=state.pos + 6), method="decode_step")
    assert bool(jnp.all(jnp.isnan(logits)))


def test_train_mode_applies_dropout(case):
    cfg, params, batch = case
    model = build_model(cfg)
    args = ({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    a = model.apply(*args, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(*args, train=True, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.asarray(a)).all() and float(jnp.abs(a - model.apply(*args)).max()) > 1e-3
