"""A matmul for dense layers whose weight gradient XLA CPU runs on its fast dot kernels.

Why: for `y = x @ w` (x [..., in], w [in, out]), JAX's transpose rule writes the
weight gradient as `dot_general(x, g)` contracting the rows of both operands
(x^T g with x's contracted dimension first). XLA CPU hands a dot to its fast
YNNPACK kernels only in canonical form (the left operand's contracted dimension
last); this one is not, and falls back to the generic Eigen dot, after a
transposed copy of the [N, out] gradient. For the vocabulary projection of a
train step (N = 640 rows, in 128, out 6,000) that dot took 25 ms, twice the
forward matmul, and was the largest op of the half-width Transformer's step
(bench/train_profile.py; the LSTM's was 32 ms of 205).

`matmul` is `x @ w` with a custom VJP that returns the same two cotangents, the
weight's as `(x^T) @ g` with x^T materialized first (an [in, N] copy, small next
to the [N, out] gradient) behind `lax.optimization_barrier`, so that XLA cannot
fold the transpose back into the dot. Same quantities; float rounding may differ
in the order of the N-term sums. `dot_general` plugs it into `flax.linen.Dense`
(its `dot_general` field) and falls back to `lax.dot_general` for any other
contraction.

Backend: the choice is XLA CPU's (the "cpu" kernels of `s2s_jax.backend`); a GPU's
cuBLAS takes transposed operands natively, so under the "gpu" kernels `Dense`
traces the plain `lax.dot_general` and the autodiff rule is JAX's own.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
from jax import lax

from s2s_jax.backend import kernels


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [..., in] @ w [in, out] -> [..., out]; the weight gradient is a canonical dot (module docstring)."""
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ())))


def _matmul_fwd(x: jax.Array, w: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return lax.dot_general(x, w, (((x.ndim - 1,), (0,)), ((), ()))), (x, w)


def _matmul_bwd(res: tuple[jax.Array, jax.Array], g: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, w = res
    dx = lax.dot_general(g, w, (((g.ndim - 1,), (1,)), ((), ())))  # g @ w^T, as JAX's own rule
    x_t = lax.optimization_barrier(x.reshape(-1, x.shape[-1]).T)  # [in, N], kept as its own buffer
    dw = lax.dot_general(x_t, g.reshape(-1, g.shape[-1]), (((1,), (0,)), ((), ())))
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)

_DENSE_DIMS_BATCH: tuple = ((), ())


def dot_general(
    lhs: jax.Array, rhs: jax.Array, dimension_numbers: Any, precision: Any = None,
    preferred_element_type: Any = None, **kwargs: Any,
) -> jax.Array:
    """`lax.dot_general`'s signature; Dense's contraction (lhs last with rhs first) goes through `matmul` under
    the "cpu" kernels (with default precision and result type), everything else to `lax.dot_general`."""
    (lc, rc), batch = dimension_numbers
    dense = (tuple(lc) == (lhs.ndim - 1,) and tuple(rc) == (0,) and rhs.ndim == 2
             and tuple(map(tuple, batch)) == _DENSE_DIMS_BATCH)
    if dense and precision is None and preferred_element_type is None and not kwargs and kernels() == "cpu":
        return matmul(lhs, rhs)
    return lax.dot_general(lhs, rhs, dimension_numbers, precision=precision,
                           preferred_element_type=preferred_element_type, **kwargs)


class Dense(nn.Dense):
    """`flax.linen.Dense` (same parameters, `kernel` [in, out] and `bias`) whose matmul is `dot_general` above."""

    dot_general: Any = dot_general
