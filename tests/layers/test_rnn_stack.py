"""Flax `RNNStack` against the torch stacks torch_ref uses (nn.RNN/LSTM/GRU, TextbookGRU), same weights.

Ragged lengths (including 1) go through packed sequences on the torch side and
masking on the Flax side; outputs and final states must agree within 1e-5 and
gradients (parameters, inputs, initial state) within 1e-4 relative.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict

from s2s_jax.layers.rnn import RNNStack
from s2s_jax.layers.rnn import reverse_within_lengths as flax_reverse
from torch_ref.convert import rnn_stack
from torch_ref.layers import make_rnn, run_rnn
from torch_ref.layers import reverse_within_lengths as torch_reverse

IN, H, B, T = 5, 6, 4, 6
LENGTHS = np.array([T, 1, 3, 5], np.int32)
CASES = [
    # (cell, reset_after, n_layers, bidirectional)
    ("rnn", True, 1, False),
    ("rnn", True, 2, True),
    ("lstm", True, 1, False),
    ("lstm", True, 2, True),
    ("gru", True, 2, False),
    ("gru", True, 2, True),
    ("gru", False, 1, False),
    ("gru", False, 2, True),
]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / (np.abs(b).max() + 1e-6))


def as_tuple(state):
    return tuple(state) if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("cell,reset_after,n_layers,bidirectional", CASES)
def test_stack_matches_torch(cell, reset_after, n_layers, bidirectional):
    rng = np.random.default_rng(0)
    directions = 2 if bidirectional else 1
    x = rng.normal(size=(B, T, IN)).astype(np.float32)
    init_h = [rng.normal(size=(B, n_layers * directions, H)).astype(np.float32) for _ in range(2)]
    initial = tuple(init_h) if cell == "lstm" else init_h[0]
    w_out = rng.normal(size=(B, T, H * directions)).astype(np.float32)
    w_fin = [rng.normal(size=(B, n_layers * directions, H)).astype(np.float32) for _ in range(2)]

    stack = RNNStack(cell, IN, H, n_layers, bidirectional, 0.0, reset_after)
    params = stack.init(jax.random.key(1), x, LENGTHS, initial)["params"]

    def run(p, x, initial):
        return stack.apply({"params": p}, x, LENGTHS, initial)

    def loss(p, x, initial):
        out, final = run(p, x, initial)
        return jnp.sum(out * w_out) + sum(jnp.sum(f * w) for f, w in zip(as_tuple(final), w_fin, strict=False))

    out, final = jax.jit(run)(params, x, initial)
    g_params, g_x, g_init = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(params, x, initial)

    # Same weights into the torch stack through the conversion rules.
    rules = rnn_stack("stack", "rnn", n_layers, bidirectional)
    flat = {"/".join(k): v for k, v in flatten_dict({"stack": params}).items()}
    flat_g = {"/".join(k): v for k, v in flatten_dict({"stack": g_params}).items()}
    trnn = make_rnn(cell, IN, H, n_layers, 0.0, bidirectional, reset_after)
    trnn.load_state_dict({r.torch_key[4:]: torch.from_numpy(np.array(flat[r.flax_path])) for r in rules},
                         strict=True)
    tx = torch.from_numpy(x).requires_grad_(True)
    tinit = tuple(torch.from_numpy(s).requires_grad_(True) for s in as_tuple(initial))
    t_out, t_final = run_rnn(trnn, tx, torch.from_numpy(LENGTHS), tinit if cell == "lstm" else tinit[0])
    t_loss = (t_out * torch.from_numpy(w_out)).sum() + sum(
        (f * torch.from_numpy(w)).sum() for f, w in zip(as_tuple(t_final), w_fin, strict=False))
    t_loss.backward()

    assert float(np.abs(t_out.detach().numpy() - np.asarray(out)).max()) <= 1e-5
    for f_j, f_t in zip(as_tuple(final), as_tuple(t_final), strict=True):
        assert float(np.abs(f_t.detach().numpy() - np.asarray(f_j)).max()) <= 1e-5
    # Padding positions emit zeros on both sides.
    pad = np.arange(T)[None, :] >= LENGTHS[:, None]
    assert np.all(np.asarray(out)[pad] == 0.0)

    for r in rules:
        got = dict(trnn.named_parameters())[r.torch_key[4:]].grad.numpy()
        assert rel(np.asarray(flat_g[r.flax_path]), got) <= 1e-4, r.torch_key
    assert rel(np.asarray(g_x), tx.grad.numpy()) <= 1e-4
    for g_j, t in zip(as_tuple(g_init), tinit, strict=True):
        assert rel(np.asarray(g_j), t.grad.numpy()) <= 1e-4


def test_final_state_is_last_true_token():
    """A row's final state equals the output at its own last token (forward direction)."""
    x = np.random.default_rng(3).normal(size=(B, T, IN)).astype(np.float32)
    trnn = make_rnn("gru", IN, H)
    with torch.no_grad():
        out, final = run_rnn(trnn, torch.from_numpy(x), torch.from_numpy(LENGTHS))
    last = out[torch.arange(B), torch.from_numpy(LENGTHS).long() - 1]
    np.testing.assert_allclose(final[:, 0].numpy(), last.numpy(), atol=1e-6)


def test_reverse_within_lengths_agrees():
    x = np.arange(B * T, dtype=np.float32).reshape(B, T, 1) + 1
    x[np.arange(T)[None, :] >= LENGTHS[:, None]] = 0
    want = np.asarray(flax_reverse(jnp.asarray(x), jnp.asarray(LENGTHS)))
    got = torch_reverse(torch.from_numpy(x), torch.from_numpy(LENGTHS)).numpy()
    np.testing.assert_array_equal(got, want)
    assert want[1, 0, 0] == x[1, 0, 0] and want[2, 0, 0] == x[2, 2, 0] and want[2, 3, 0] == 0
