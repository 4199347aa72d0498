"""`layers.recurrence`: the custom-VJP scan gives the plain scan's outputs and gradients, for every cell it covers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from s2s_jax.layers import recurrence
from s2s_jax.layers.rnn import RNNStack


def _loss(model: RNNStack, cell: str, weights: jax.Array, lengths: jax.Array):
    def loss(params, x):
        ys, final = model.apply(params, x, lengths)
        summary = final[0].sum() * 0.3 + final[1].sum() * 0.7 if cell == "lstm" else final.sum() * 0.5
        return (ys * weights).sum() + summary

    return loss


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_matches_plain_scan(cell: str, bidirectional: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    assert recurrence.covers(cell, True)
    model = RNNStack(cell, 8, 16, n_layers=2, bidirectional=bidirectional)
    x = jax.random.normal(jax.random.key(0), (3, 7, 8))
    lengths = jnp.array([7, 4, 1])  # a full row, a padded one, a one-token one
    params = model.init(jax.random.key(1), x, lengths)
    weights = jax.random.normal(jax.random.key(2), (3, 7, 16 * (2 if bidirectional else 1)))
    loss = _loss(model, cell, weights, lengths)
    monkeypatch.setattr(recurrence, "supported", lambda c, r: True)
    value, grads = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    monkeypatch.setattr(recurrence, "supported", lambda c, r: False)
    ref_value, ref_grads = jax.value_and_grad(loss, argnums=(0, 1))(params, x)
    assert jnp.allclose(value, ref_value, rtol=1e-5, atol=1e-5)  # a sum of terms that cancel
    for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        assert jnp.max(jnp.abs(g - r)) <= 1e-5 * (1.0 + jnp.max(jnp.abs(r)))


def test_textbook_gru_not_covered() -> None:
    assert not recurrence.covers("gru", False)
    assert not recurrence.supported("gru", False)
