"""`layers.dense`: the custom-VJP matmul gives `x @ w` and JAX's own gradients; Dense keeps nn.Dense's parameters."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.backend import use_kernels
from s2s_jax.layers.dense import Dense, dot_general, matmul


def test_matmul_value_and_gradients() -> None:
    x = jax.random.normal(jax.random.key(0), (4, 5, 8))
    w = jax.random.normal(jax.random.key(1), (8, 11))
    g = jax.random.normal(jax.random.key(2), (4, 5, 11))
    assert jnp.array_equal(matmul(x, w), x @ w)
    ours = jax.grad(lambda x, w: jnp.sum(matmul(x, w) * g), argnums=(0, 1))(x, w)
    ref = jax.grad(lambda x, w: jnp.sum((x @ w) * g), argnums=(0, 1))(x, w)
    for a, b in zip(ours, ref, strict=True):
        assert jnp.allclose(a, b, rtol=1e-5, atol=1e-5)
    jitted = jax.jit(jax.grad(lambda x, w: jnp.sum(matmul(x, w) * g), argnums=(0, 1)))(x, w)
    for a, b in zip(jitted, ref, strict=True):
        assert jnp.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_dense_same_parameters_and_outputs_as_flax() -> None:
    x = jax.random.normal(jax.random.key(0), (3, 6))
    ours, ref = Dense(7), nn.Dense(7)
    params = ref.init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
    assert jnp.allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-6)


def test_dot_general_falls_back() -> None:
    a, b = jnp.ones((2, 3, 4)), jnp.ones((2, 4, 5))
    batched = (((2,), (1,)), ((0,), (0,)))
    assert dot_general(a, b, batched).shape == (2, 3, 5)  # not Dense's contraction: lax.dot_general
    with use_kernels("gpu"):  # the "gpu" kernels trace JAX's own rule
        jaxpr = jax.make_jaxpr(lambda x, w: dot_general(x, w, (((1,), (0,)), ((), ()))))(jnp.ones((2, 3)),
                                                                                           jnp.ones((3, 4)))
    assert "custom_vjp" not in str(jaxpr)
