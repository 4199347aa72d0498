"""Teacher forcing below 1 (bentrevett tutorials 1-3): the JAX schedule drawn from the dropout RNG, replayed in
torch_ref with the same draws, gives the same logits and gradients at ratios 0, 0.5 and 1, for an RNN and an
attention decoder; ratio 1 is the fused teacher-forced pass."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torch_ref
from s2s_jax import build_model, presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.config import ConfigError
from torch_ref.convert import flax_to_torch
from torch_ref.teacher_forcing import decode_with_draws

SMALL = dict(src_vocab_size=13, tgt_vocab_size=11, emb_dim=8, hid_dim=8, dropout=0.0)
PRESETS = {"bentrevett-gru": {}, "bentrevett-attention": {}}


def _jax(cfg, params, batch, seed, grad=True):
    model = build_model(cfg)

    def run(p):
        out, state = model.apply({"params": p}, batch["src"], batch["src_lengths"], batch["tgt_in"], train=True,
                                 rngs={"dropout": jax.random.key(seed)}, mutable=["intermediates"])
        draws = state["intermediates"]["teacher_draws"][0] if state else jnp.ones(batch["tgt_in"].shape[1], bool)
        return out, draws

    logits, draws = jax.jit(run)(params)
    w = np.random.default_rng(3).standard_normal(logits.shape).astype(np.float32)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(run(p)[0] * w)))(params) if grad else None
    return np.asarray(logits), np.asarray(draws), grads, w


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("ratio", [0.0, 0.5, 1.0])
def test_the_same_schedule_in_jax_and_torch(preset, ratio):
    cfg = presets.get(preset, **SMALL, teacher_forcing=ratio)
    batch = random_batch(cfg, batch=3, src_len=5, tgt_len=7)
    params = init_params(cfg, batch)
    logits, draws, grads, w = _jax(cfg, params, batch, seed=7, grad=ratio == 0.5)  # gradients where it mixes
    assert draws.shape == (7,) and draws[0]  # step 0 always reads bos
    if ratio == 0.0:
        assert not draws[1:].any()
    if ratio == 1.0:  # the fused teacher-forced pass, as in inference-mode parity
        plain = build_model(cfg).apply({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
        np.testing.assert_allclose(logits, np.asarray(plain), atol=1e-5)
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    src, lengths, tgt = (torch.from_numpy(np.asarray(batch[k])).long() for k in ("src", "src_lengths", "tgt_in"))
    t_logits = decode_with_draws(tmodel, tmodel.encode(src, lengths), tgt, torch.from_numpy(draws))
    np.testing.assert_allclose(t_logits.detach().numpy(), logits, atol=1e-5)
    if grads is None:
        return
    (t_logits * torch.from_numpy(w)).sum().backward()
    want = {k: np.asarray(v) for k, v in flax_to_torch(cfg, grads).items()}
    for name, p in tmodel.named_parameters():
        g = p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape), np.float32)
        scale = max(float(np.abs(want[name]).max()), 1e-3)
        assert float(np.abs(g - want[name]).max()) / scale <= 1e-4, name


def test_draws_come_from_the_dropout_rng_at_the_ratio():
    cfg = presets.get("bentrevett-gru", **SMALL, teacher_forcing=0.5)
    batch = random_batch(cfg, batch=2, src_len=4, tgt_len=80)
    params = init_params(cfg, batch)
    _, a, _, _ = _jax(cfg, params, batch, seed=1, grad=False)
    _, b, _, _ = _jax(cfg, params, batch, seed=1, grad=False)
    _, c, _, _ = _jax(cfg, params, batch, seed=2, grad=False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)  # a function of the key
    assert 0.3 < a[1:].mean() < 0.7


def test_teacher_forcing_is_refused_where_it_does_not_apply():
    with pytest.raises(ConfigError, match="teacher_forcing < 1 is implemented by the rnn and attention"):
        presets.get("transformer", **SMALL, n_heads=2, ff_dim=16, teacher_forcing=0.5)
    with pytest.raises(ConfigError, match=r"teacher_forcing=1.5 must be in \[0, 1\]"):
        presets.get("bentrevett-gru", **SMALL, teacher_forcing=1.5)
