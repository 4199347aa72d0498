"""One step of each cell against a numpy transcription of seed 002's hand-written cells.

Seed 002 writes column-vector cells with one matrix per gate (`W_f @ x + U_f @ h + b_f`).
Here those matrices are stacked into PyTorch's fused layout (LSTM i, f, g, o; GRU r, z, n)
and fed to the Flax cells and to the torch_ref stacks. The seed's GRU update is
`h' = (1 - z) h + z h~` while torch's is `h' = (1 - z) n + z h`: the seed's z is 1 - torch's z,
which the fused weights express by negating the z block (sigmoid(-a) = 1 - sigmoid(a)).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from s2s_jax.layers import cells
from torch_ref.layers import make_rnn, step_rnn

IN, H, B = 5, 4, 3
ATOL = 1e-6


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def seed_params(names: list[str], seed: int) -> dict[str, np.ndarray]:
    """Seed-style parameters: W_* [H, IN], U_* [H, H], b_* [H, 1] (random, not zero, to exercise the biases)."""
    rng = np.random.default_rng(seed)
    p = {}
    for g in names:
        p[f"W_{g}"] = rng.normal(0, 0.5, (H, IN)).astype(np.float32)
        p[f"U_{g}"] = rng.normal(0, 0.5, (H, H)).astype(np.float32)
        p[f"b_{g}"] = rng.normal(0, 0.5, (H, 1)).astype(np.float32)
    return p


# --- seed 002's cells, transcribed (column vectors: x [IN, B], h [H, B]) -------------------------

def seed_elman(p, x, h):
    return np.tanh(p["U_h"] @ h + p["W_h"] @ x + p["b_h"])


def seed_lstm(p, x, state):
    h_prev, c_prev = state
    f = sigmoid(p["W_f"] @ x + p["U_f"] @ h_prev + p["b_f"])
    i = sigmoid(p["W_i"] @ x + p["U_i"] @ h_prev + p["b_i"])
    o = sigmoid(p["W_o"] @ x + p["U_o"] @ h_prev + p["b_o"])
    c_tilde = np.tanh(p["W_c"] @ x + p["U_c"] @ h_prev + p["b_c"])
    c_next = f * c_prev + i * c_tilde
    return o * np.tanh(c_next), c_next


def seed_gru(p, x, h_prev):
    """Returns (h_next, z) so the z convention can be checked."""
    z = sigmoid(p["W_z"] @ x + p["U_z"] @ h_prev + p["b_z"])
    r = sigmoid(p["W_r"] @ x + p["U_r"] @ h_prev + p["b_r"])
    h_tilde = np.tanh(p["W_h"] @ x + p["U_h"] @ (r * h_prev) + p["b_h"])
    return (1 - z) * h_prev + z * h_tilde, z


# --- seed matrices -> fused layout --------------------------------------------------------------

def fuse(p: dict[str, np.ndarray], order: list[str], sign: dict[str, float] | None = None):
    """(weight_ih, weight_hh, bias_ih, bias_hh); seed biases go to bias_ih, bias_hh is 0."""
    sign = sign or {}
    w_ih = np.concatenate([sign.get(g, 1.0) * p[f"W_{g}"] for g in order])
    w_hh = np.concatenate([sign.get(g, 1.0) * p[f"U_{g}"] for g in order])
    b_ih = np.concatenate([sign.get(g, 1.0) * p[f"b_{g}"][:, 0] for g in order])
    return w_ih, w_hh, b_ih, np.zeros_like(b_ih)


def flax_step(cell: str, fused, x, carry, reset_after: bool = True):
    w_ih, w_hh, b_ih, b_hh = (jnp.asarray(a) for a in fused)
    xw = jnp.asarray(x) @ w_ih.T + b_ih
    return cells.step(cell, xw, carry, w_hh, b_hh, reset_after)


def torch_step(cell: str, fused, x, carry, reset_after: bool = True):
    """One step through torch_ref's stack (nn.RNN / nn.LSTM / TextbookGRU) with the fused weights."""
    rnn = make_rnn(cell, IN, H, reset_after=reset_after)
    rnn.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in
                         zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), fused, strict=True)})
    state = tuple(torch.from_numpy(np.asarray(c))[:, None] for c in carry) if cell == "lstm" else \
        torch.from_numpy(np.asarray(carry))[:, None]
    with torch.no_grad():
        _, new = step_rnn(rnn, torch.from_numpy(x), state)
    return tuple(s[:, 0].numpy() for s in new) if cell == "lstm" else new[:, 0].numpy()


def inputs(seed: int):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(B, IN)).astype(np.float32), rng.normal(size=(B, H)).astype(np.float32)


def test_elman_matches_seed():
    p = seed_params(["h"], 0)
    x, h = inputs(1)
    want = seed_elman(p, x.T, h.T).T
    fused = fuse(p, ["h"])
    np.testing.assert_allclose(np.asarray(flax_step("rnn", fused, x, jnp.asarray(h))), want, atol=ATOL)
    np.testing.assert_allclose(torch_step("rnn", fused, x, h), want, atol=ATOL)


def test_lstm_matches_seed():
    p = seed_params(["i", "f", "c", "o"], 2)
    x, h = inputs(3)
    c = np.random.default_rng(4).normal(size=(B, H)).astype(np.float32)
    want_h, want_c = seed_lstm(p, x.T, (h.T, c.T))
    fused = fuse(p, ["i", "f", "c", "o"])  # torch gate order i, f, g (= seed's c~), o
    got_h, got_c = flax_step("lstm", fused, x, (jnp.asarray(h), jnp.asarray(c)))
    np.testing.assert_allclose(np.asarray(got_h), want_h.T, atol=ATOL)
    np.testing.assert_allclose(np.asarray(got_c), want_c.T, atol=ATOL)
    t_h, t_c = torch_step("lstm", fused, x, (h, c))
    np.testing.assert_allclose(t_h, want_h.T, atol=ATOL)
    np.testing.assert_allclose(t_c, want_c.T, atol=ATOL)


def test_textbook_gru_matches_seed_with_negated_update_gate():
    p = seed_params(["r", "z", "h"], 5)
    x, h = inputs(6)
    want, z_seed = seed_gru(p, x.T, h.T)
    fused = fuse(p, ["r", "z", "h"], sign={"z": -1.0})
    got = flax_step("gru", fused, x, jnp.asarray(h), reset_after=False)
    np.testing.assert_allclose(np.asarray(got), want.T, atol=ATOL)
    np.testing.assert_allclose(torch_step("gru", fused, x, h, reset_after=False), want.T, atol=ATOL)


def test_gru_update_gate_is_one_minus_seed_z():
    """The identity behind the conversion: torch's z computed from the negated block == 1 - seed's z."""
    p = seed_params(["r", "z", "h"], 7)
    x, h = inputs(8)
    _, z_seed = seed_gru(p, x.T, h.T)
    w_ih, w_hh, b_ih, b_hh = fuse(p, ["r", "z", "h"], sign={"z": -1.0})
    z_torch = sigmoid(x @ w_ih[H:2 * H].T + b_ih[H:2 * H] + h @ w_hh[H:2 * H].T + b_hh[H:2 * H])
    np.testing.assert_allclose(z_torch, 1.0 - z_seed.T, atol=ATOL)
    # Without the negation the cells are different models: the outputs must not agree.
    want, _ = seed_gru(p, x.T, h.T)
    plain = flax_step("gru", fuse(p, ["r", "z", "h"]), x, jnp.asarray(h), reset_after=False)
    assert np.abs(np.asarray(plain) - want.T).max() > 1e-3


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_flax_cell_matches_torch_cell(cell):
    """reset_after=True GRU, LSTM and Elman against torch's own nn.*Cell (PyTorch's documented equations)."""
    torch.manual_seed(0)
    module = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell](IN, H)
    fused = tuple(getattr(module, k).detach().numpy() for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    x, h = inputs(9)
    c = np.random.default_rng(10).normal(size=(B, H)).astype(np.float32)
    with torch.no_grad():
        if cell == "lstm":
            want = module(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))[0].numpy()
            got = flax_step(cell, fused, x, (jnp.asarray(h), jnp.asarray(c)))[0]
        else:
            want = module(torch.from_numpy(x), torch.from_numpy(h)).numpy()
            got = flax_step(cell, fused, x, jnp.asarray(h))
    np.testing.assert_allclose(np.asarray(got), want, atol=ATOL)
