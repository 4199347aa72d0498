"""Recurrent cell updates on pre-projected inputs, in PyTorch's fused layout.

Each cell takes `xw = x @ weight_ih.T + bias_ih` (computed for all time steps at
once, outside the scan) and the previous carry, and does only the recurrent part.
Gate order follows PyTorch: LSTM i, f, g, o; GRU r, z, n. The equations are seed
002's cells; the GRU update uses PyTorch's convention `h' = (1 - z) * n + z * h`
(seed 002 writes `z` for what is `1 - z` here: the same model, gate negated).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

# Number of stacked gate blocks in weight_ih / weight_hh per cell.
GATES = {"rnn": 1, "lstm": 4, "gru": 3}

Carry = Any  # h [B, H] for rnn/gru, (h, c) for lstm


def elman(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array) -> jax.Array:
    """h' = tanh(W_ih x + b_ih + W_hh h + b_hh)."""
    return jnp.tanh(xw + h @ w_hh.T + b_hh)


def lstm(xw: jax.Array, carry: tuple[jax.Array, jax.Array], w_hh: jax.Array, b_hh: jax.Array):
    """(h', c') with input, forget, candidate and output gates."""
    h, c = carry
    i, f, g, o = jnp.split(xw + h @ w_hh.T + b_hh, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def gru(xw: jax.Array, h: jax.Array, w_hh: jax.Array, b_hh: jax.Array, reset_after: bool = True) -> jax.Array:
    """h' = (1 - z) * n + z * h, with the reset gate after (PyTorch) or before (textbook) W_hn."""
    xr, xz, xn = jnp.split(xw, 3, axis=-1)
    if reset_after:
        hr, hz, hn = jnp.split(h @ w_hh.T + b_hh, 3, axis=-1)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
    else:
        w_hr, w_hz, w_hn = jnp.split(w_hh, 3, axis=0)
        b_hr, b_hz, b_hn = jnp.split(b_hh, 3, axis=-1)
        r = jax.nn.sigmoid(xr + h @ w_hr.T + b_hr)
        z = jax.nn.sigmoid(xz + h @ w_hz.T + b_hz)
        n = jnp.tanh(xn + (r * h) @ w_hn.T + b_hn)
    return (1.0 - z) * n + z * h


def step(cell: str, xw: jax.Array, carry: Carry, w_hh: jax.Array, b_hh: jax.Array, reset_after: bool = True) -> Carry:
    """Dispatch one recurrent update by cell name."""
    if cell == "lstm":
        return lstm(xw, carry, w_hh, b_hh)
    if cell == "gru":
        return gru(xw, carry, w_hh, b_hh, reset_after)
    return elman(xw, carry, w_hh, b_hh)


def output(cell: str, carry: Carry) -> jax.Array:
    """The hidden state a cell exposes (h for every cell)."""
    return carry[0] if cell == "lstm" else carry
