"""ConvS2S building blocks: (weight-normalized) linear and 1-D convolution, GLU, gradient scaling.

Parameter layouts are chosen so the torch conversion is a plain transpose:
- `Linear`: `kernel` [in, out] (torch `weight` [out, in]), `bias` [out].
- `Conv1D`: `kernel` [k, in, out] (torch Conv1d `weight` [out, in, k]), `bias` [out].
With `weight_norm=True` the kernel is `g * v / ||v||`, the norm taken per output
channel (over every axis but the last), storing `v` (kernel-shaped) and `g`
([1, out] or [1, 1, out]); these transpose to torch's
`parametrizations.weight.original1` / `original0` for `weight_norm(dim=0)`.

`Conv1D` is a 'valid' convolution; callers pad (zeros for the encoder's same
padding, the causal fill for the decoder), and `step` applies the kernel to a
window of exactly k inputs, which is what incremental decoding needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.backend import kernels
from s2s_jax.layers.dense import matmul

Init = Callable[..., jax.Array]


def _weight(module: nn.Module, shape: tuple[int, ...], init: Init, weight_norm: bool) -> jax.Array:
    """The kernel, either a plain parameter or g * v / ||v|| with g initialized to ||v|| (so kernel == v at init)."""
    if not weight_norm:
        return module.param("kernel", init, shape)
    axes = tuple(range(len(shape) - 1))
    v = module.param("v", init, shape)
    norm = lambda w: jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True))
    g = module.param("g", lambda _key: norm(v))
    return v * (g / norm(v))


class Linear(nn.Module):
    """nn.Dense with an optional weight normalization (fairseq's `Linear`)."""

    features: int
    weight_norm: bool = False
    kernel_init: Init = nn.initializers.lecun_normal()
    bias_init: Init = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = _weight(self, (x.shape[-1], self.features), self.kernel_init, self.weight_norm)
        bias = self.param("bias", self.bias_init, (self.features,))
        return (matmul(x, kernel) if kernels() == "cpu" else x @ kernel) + bias


class Conv1D(nn.Module):
    """A 'valid' 1-D convolution over batch-first [B, T, C] inputs (callers pad)."""

    in_features: int
    features: int
    kernel_size: int
    weight_norm: bool = False
    kernel_init: Init = nn.initializers.lecun_normal()
    bias_init: Init = nn.initializers.zeros

    def setup(self) -> None:
        shape = (self.kernel_size, self.in_features, self.features)
        self.kernel = _weight(self, shape, self.kernel_init, self.weight_norm)
        self.bias = self.param("bias", self.bias_init, (self.features,))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T + k - 1, C] (already padded) -> [B, T, features]."""
        y = jax.lax.conv_general_dilated(x, self.kernel, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
        return y + self.bias

    def step(self, window: jax.Array) -> jax.Array:
        """window [B, k, C] (the last k inputs, oldest first) -> [B, features], the output at the newest one."""
        return jnp.einsum("bki,kio->bo", window, self.kernel) + self.bias


def glu(x: jax.Array) -> jax.Array:
    """Gated linear unit over the last axis: first half * sigmoid(second half) (torch F.glu order)."""
    a, b = jnp.split(x, 2, axis=-1)
    return a * jax.nn.sigmoid(b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def grad_multiply(x: jax.Array, scale: float) -> jax.Array:
    """Identity forward; gradients multiplied by `scale` (fairseq's GradMultiply).

    ConvS2S's encoder output feeds every decoder layer's attention, so its
    gradient is the sum of 2 * (attention layers) paths; scaling by the inverse
    keeps the encoder's update size independent of decoder depth (Gehring et al.).
    """
    return x


def _grad_multiply_fwd(x: jax.Array, scale: float) -> tuple[jax.Array, None]:
    return x, None


def _grad_multiply_bwd(scale: float, _res: None, g: jax.Array) -> tuple[jax.Array]:
    return (g * scale,)


grad_multiply.defvjp(_grad_multiply_fwd, _grad_multiply_bwd)
