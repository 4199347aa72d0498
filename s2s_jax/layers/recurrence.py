"""The masked recurrence of one RNN layer as a `lax.scan` whose backward pass takes the weight gradient out of the loop.

Why: differentiating a scan, JAX accumulates the gradient of a loop-invariant weight inside the
reversed loop: at every time step a [B, H]^T x [B, G*H] product (contracting the batch, so not a
canonical dot: XLA CPU runs it on its generic Eigen path, not YNNPACK) and an add into a [G*H, H]
accumulator. For the half-width bentrevett LSTM's train step those were 8.5 ms of dots and about
as much in adds per step (bench/train_profile.py). Here the backward scan only carries the state's
cotangent (one canonical [B, G*H] x [G*H, H] product a step, as the forward) and stacks the
cotangent of the recurrent pre-activation `r_t = h_{t-1} @ W_hh^T + b_hh`; after the loop
dW_hh = sum_t dr_t^T h_{t-1} is one [T*B]-deep matmul and db_hh = sum_t dr_t, the way cuDNN and
oneDNN (torch's `mkldnn_rnn_layer_backward`) do it.

The cell's elementwise part (`_post`) is differentiated by `jax.vjp` inside the backward loop, so
the equations stay those of `cells.py`; the forward keeps `r_t` and the previous carry per step
(what JAX's own scan autodiff keeps too). Same quantities as differentiating the plain scan; only
the float summation order of dW_hh and db_hh differs. The textbook GRU (`reset_after=False`),
whose recurrent product takes `r * h`, is not covered (`covers`); which cells use it is `supported`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from s2s_jax.backend import kernels
from s2s_jax.layers import cells

Carry = Any


def covers(cell: str, reset_after: bool) -> bool:
    """Whether `recurrence` can run this cell: the recurrent product must be h @ W_hh^T alone."""
    return cell in ("rnn", "lstm") or (cell == "gru" and reset_after)


def supported(cell: str, reset_after: bool) -> bool:
    """Whether RNN layers use `recurrence`: the LSTM only, where it was measured to pay.

    Half-width bentrevett presets, one core, A/B alternated in one run: the LSTM step 3.5-3.7% faster (two
    runs); the GRU's -2% and +1%, within noise (its vjp recomputes more elementwise work per step than the
    dots it saves), so the GRU and Elman cells keep flax's `nn.scan` (`covers` says what `recurrence` can do).
    Under the "gpu" kernels nothing was measured, so every cell keeps `nn.scan` there.
    """
    return cell == "lstm" and kernels() == "cpu"


def _post(cell: str) -> Callable[[jax.Array, jax.Array, Carry], Carry]:
    """The cell's update from xw = W_ih x + b_ih, r = W_hh h + b_hh and the previous carry (cells.py's equations)."""
    if cell == "lstm":
        def lstm(xw, r, carry):
            _, c = carry
            i, f, g, o = jnp.split(xw + r, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            return jax.nn.sigmoid(o) * jnp.tanh(c), c
        return lstm
    if cell == "gru":
        def gru(xw, r, h):
            xr, xz, xn = jnp.split(xw, 3, axis=-1)
            hr, hz, hn = jnp.split(r, 3, axis=-1)
            rr = jax.nn.sigmoid(xr + hr)
            z = jax.nn.sigmoid(xz + hz)
            n = jnp.tanh(xn + rr * hn)
            return (1.0 - z) * n + z * h
        return gru
    return lambda xw, r, h: jnp.tanh(xw + r)


def _hidden(cell: str, carry: Carry) -> jax.Array:
    return cells.output(cell, carry)


def _with_hidden(cell: str, carry: Carry, h: jax.Array) -> Carry:
    return (h, carry[1]) if cell == "lstm" else h


def _forward(cell: str, xw: jax.Array, keep: jax.Array, carry: Carry, w_hh: jax.Array, b_hh: jax.Array):
    """Scan over time-major xw [T, B, G*H], keep [T, B]: (final carry, outputs [T, B, H], r [T, B, G*H],
    previous carries [T, ...])."""
    post = _post(cell)

    def body(c, inputs):
        x_t, k_t = inputs
        r = _hidden(cell, c) @ w_hh.T + b_hh
        new = post(x_t, r, c)
        k = k_t[:, None]
        out = jnp.where(k, _hidden(cell, new), 0.0)
        return jax.tree.map(lambda n, o: jnp.where(k, n, o), new, c), (out, r, c)

    final, (ys, rs, prev) = lax.scan(body, carry, (xw, keep))
    return final, ys, rs, prev


@jax.custom_vjp
def _recurrence_lstm(xw, keep, carry, w_hh, b_hh):
    return _forward("lstm", xw, keep, carry, w_hh, b_hh)[:2]


@jax.custom_vjp
def _recurrence_gru(xw, keep, carry, w_hh, b_hh):
    return _forward("gru", xw, keep, carry, w_hh, b_hh)[:2]


@jax.custom_vjp
def _recurrence_rnn(xw, keep, carry, w_hh, b_hh):
    return _forward("rnn", xw, keep, carry, w_hh, b_hh)[:2]


def _fwd(cell: str):
    def fwd(xw, keep, carry, w_hh, b_hh):
        final, ys, rs, prev = _forward(cell, xw, keep, carry, w_hh, b_hh)
        return (final, ys), (xw, keep, w_hh, rs, prev)
    return fwd


def _weight_grad(prev_h: jax.Array, dr: jax.Array) -> jax.Array:
    """dW_hh [G*H, H] = sum over time and batch of dr^T h_prev, as one matmul (a canonical dot on XLA CPU)."""
    h2 = prev_h.reshape(-1, prev_h.shape[-1])
    d2 = dr.reshape(-1, dr.shape[-1])
    if kernels() == "cpu":  # dr^T [G*H, N] materialized, so XLA cannot fold it back: see layers/dense.py
        return lax.optimization_barrier(d2.T) @ h2
    return d2.T @ h2


def _bwd(cell: str):
    post = _post(cell)

    def bwd(res, cts):
        xw, keep, w_hh, rs, prev = res
        d_final, d_ys = cts

        def body(dc, inputs):
            x_t, k_t, r_t, c_prev, dy_t = inputs
            k = k_t[:, None]
            d_new = jax.tree.map(lambda d: jnp.where(k, d, 0.0), dc)
            d_new = _with_hidden(cell, d_new, _hidden(cell, d_new) + jnp.where(k, dy_t, 0.0))
            _, vjp = jax.vjp(post, x_t, r_t, c_prev)
            dx_t, dr_t, dc_prev = vjp(d_new)
            dh = _hidden(cell, dc_prev) + dr_t @ w_hh
            dc_prev = _with_hidden(cell, dc_prev, dh)
            dc = jax.tree.map(lambda p, d: p + jnp.where(k, 0.0, d), dc_prev, dc)
            return dc, (dx_t, dr_t)

        d_carry, (dxw, drs) = lax.scan(body, d_final, (xw, keep, rs, prev, d_ys), reverse=True)
        d_w = _weight_grad(_hidden(cell, prev), drs).astype(w_hh.dtype)
        d_b = jnp.sum(drs, axis=(0, 1)).astype(w_hh.dtype)
        return dxw, None, d_carry, d_w, d_b

    return bwd


_RECURRENCES = {"lstm": _recurrence_lstm, "gru": _recurrence_gru, "rnn": _recurrence_rnn}
for _cell, _f in _RECURRENCES.items():
    _f.defvjp(_fwd(_cell), _bwd(_cell))


def recurrence(cell: str, xw: jax.Array, keep: jax.Array, carry: Carry, w_hh: jax.Array,
               b_hh: jax.Array) -> tuple[Carry, jax.Array]:
    """Batch-first xw [B, T, G*H] (the projected inputs), keep [B, T] (True on real tokens), carry [B, H]
    (a pair for LSTM) -> (final carry, outputs [B, T, H]); steps with keep False leave the carry and emit 0."""
    final, ys = _RECURRENCES[cell](jnp.swapaxes(xw, 0, 1), jnp.swapaxes(keep, 0, 1), carry, w_hh, b_hh)
    return final, jnp.swapaxes(ys, 0, 1)
