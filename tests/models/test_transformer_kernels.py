"""The Transformer under the "gpu" kernels (s2s_jax.backend), forced on CPU: attention through
`jax.nn.dot_product_attention` (its XLA form here) keeps parity with torch_ref with the model's masks (source
padding, causal, the KV cache's prefix), gives the same beam tokens as the explicit path and as torch_ref, stays
finite in bf16, and leaves attention dropout to the explicit path in training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import s2s_jax.layers.transformer as transformer_layers
from s2s_jax import build_model, presets
from s2s_jax.backend import use_kernels
from tests.helpers import check_parity, check_step_equals_full, init_params, random_batch, search_beams

TINY = dict(src_vocab_size=13, tgt_vocab_size=17, hid_dim=16, n_layers=2, n_heads=2, ff_dim=32, max_len=64,
            pad_id=1, bos_id=2, eos_id=0)
PRESETS = ("bentrevett-transformer", "transformer")


def _case(name: str):
    cfg = presets.get(name, **TINY)
    batch = random_batch(cfg, seed=3, batch=4, src_len=7, tgt_len=6)  # ragged sources: padding masked
    return cfg, init_params(cfg, batch), batch


@pytest.fixture(scope="module", params=PRESETS)
def case(request):
    """Both layouts (post-LN learned positions; pre-LN sinusoids), for parity."""
    return _case(request.param)


@pytest.fixture(scope="module")
def origin():
    """bentrevett-transformer alone, for the checks whose code paths both layouts share (compiling is slow)."""
    return _case(PRESETS[0])


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the calls of `fused_attention` (the dot_product_attention path) while tracing."""
    calls = []
    real = transformer_layers.fused_attention

    def counting(*args):
        calls.append(args[0].shape)
        return real(*args)

    monkeypatch.setattr(transformer_layers, "fused_attention", counting)
    return calls


def test_fused_path_keeps_parity_with_torch_ref(case, fused_calls):
    """Logits <= 1e-5 and gradients <= 1e-4 rel (torch_ref.parity.check_parity), and step = full over the cache."""
    cfg, params, batch = case
    with use_kernels("gpu"):
        logits_err, _ = check_parity(cfg, params, batch)
        assert len(fused_calls) == 2 * 3 * cfg.n_layers  # logits and gradients: every attention of every layer
        step_err = check_step_equals_full(cfg, params, batch)
    assert logits_err <= 1e-5 and step_err <= 1e-5


def test_fused_beam_tokens_equal_the_explicit_path_and_torch_ref(origin, fused_calls):
    from export.graphs import numpy_stepper
    from export.search import search
    from torch_ref import build_model as build_torch
    from torch_ref.convert import flax_to_torch

    cfg, params, _ = origin
    batch = random_batch(cfg, seed=5, batch=4, src_len=7, tgt_len=2)
    with use_kernels("cpu"):
        explicit = search_beams(cfg, params, batch, max_len=12, alpha=0.0)
    with use_kernels("gpu"):
        fused = search_beams(cfg, params, batch, max_len=12, alpha=0.0)
    assert fused_calls
    np.testing.assert_array_equal(fused.tokens, explicit.tokens)
    np.testing.assert_array_equal(fused.lengths, explicit.lengths)
    np.testing.assert_allclose(fused.scores, explicit.scores, rtol=1e-5, atol=1e-5)
    tmodel = build_torch(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params))
    step, enc, state = numpy_stepper(tmodel.eval(), torch.from_numpy(batch["src"].astype(np.int64)),
                                     torch.from_numpy(batch["src_lengths"].astype(np.int64)), 12)
    ref = search(step, enc, state, batch=4, beam=3, max_len=12, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                 pad_id=cfg.pad_id)
    np.testing.assert_array_equal(np.asarray(fused.tokens), ref.tokens)


def test_bf16_through_the_fused_path_is_finite(case, fused_calls):
    """bf16 compute (as `--precision bf16`) in inference and in training without dropout, where it is fused."""
    cfg, params, batch = case
    model = build_model(cfg.replace(dropout=0.0))
    half = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    src, lengths, tgt = batch["src"], batch["src_lengths"], batch["tgt_in"]

    def both(p):  # one compiled call (eager flax is slower than compiling here)
        logits = model.apply({"params": p}, src, lengths, tgt)
        grads = jax.grad(lambda q: model.apply({"params": q}, src, lengths, tgt, train=True)
                         .astype(jnp.float32).sum())(p)
        return logits, grads

    with use_kernels("gpu"):
        logits, grads = jax.jit(both)(half)
    assert logits.dtype == jnp.bfloat16 and np.isfinite(np.asarray(logits, np.float32)).all()
    assert all(np.isfinite(np.asarray(g, np.float32)).all() for g in jax.tree.leaves(grads))
    assert len(fused_calls) == 2 * 3 * cfg.n_layers  # inference and training


def test_attention_dropout_in_training_stays_explicit_and_works(origin, fused_calls):
    cfg, params, batch = origin
    model = build_model(cfg)  # dropout 0.1 on sublayers and on attention weights
    args = ({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    train = jax.jit(lambda key: model.apply(*args, train=True, rngs={"dropout": key}))
    with use_kernels("gpu"):
        a, b = train(jax.random.key(1)), train(jax.random.key(1))
        assert not fused_calls  # weights are dropped: the explicit path
        plain = jax.jit(lambda: model.apply(*args))()
        assert fused_calls  # inference: fused
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(np.asarray(a)).all() and float(jnp.abs(a - plain).max()) > 1e-3


def test_cudnn_only_on_a_gpu_for_half_precision():
    on_gpu = jax.default_backend() == "gpu"
    assert transformer_layers.attention_implementation(jnp.float32, 32) == "xla"
    assert transformer_layers.attention_implementation(jnp.bfloat16, 32) == ("cudnn" if on_gpu else "xla")
    assert transformer_layers.attention_implementation(jnp.bfloat16, 12) == "xla"  # not a multiple of 8
