"""Dropout (s2s_jax.layers.dropout): right rate and scale, independent masks, flax interface; for both mask sources
(`dropout_bits`: the counter hash under the "cpu" kernels, `jax.random.bits` under the "gpu" ones)."""

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.backend import use_kernels
from s2s_jax.layers.dropout import Dropout, dropout, dropout_bits, hash_bits, keep_threshold

N = 1 << 20
dropout_jit = jax.jit(dropout, static_argnums=1)


def sigmas(observed: float, p: float, n: int) -> float:
    """How many binomial standard deviations an observed fraction is from p."""
    return abs(observed - p) / np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.9])
def test_drops_at_the_rate_and_keeps_the_mean(rate):
    y = np.asarray(dropout_jit(jax.random.key(7), rate, jnp.ones((N,), jnp.float32)))
    kept = y != 0
    assert sigmas(kept.mean(), 1 - rate, N) < 5
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    assert abs(y.mean() - 1) < 5 * np.sqrt(rate / (1 - rate) / N)


def test_masks_are_a_function_of_the_key_and_independent_across_keys_and_neighbours():
    rate, q = 0.5, 0.5
    ones = jnp.ones((N,), jnp.float32)
    a = np.asarray(dropout_jit(jax.random.key(1), rate, ones)) != 0
    again = np.asarray(dropout_jit(jax.random.key(1), rate, ones)) != 0
    others = [np.asarray(dropout_jit(k, rate, ones)) != 0 for k in jax.random.split(jax.random.key(2), 4)]
    np.testing.assert_array_equal(a, again)
    for b in others:  # two independent masks are both kept with probability q^2
        assert sigmas((a & b).mean(), q * q, N) < 5
    assert sigmas((a[1:] & a[:-1]).mean(), q * q, N - 1) < 5  # neighbours
    stride = 1000  # elements a row apart in a [.., 1000] tensor
    assert sigmas((a[stride:] & a[:-stride]).mean(), q * q, N - stride) < 5


def test_bits_are_uniform_over_their_top_byte():
    top = np.asarray(jax.jit(hash_bits, static_argnums=1)(jax.random.key(3), (N,))) >> 24
    counts = np.bincount(top, minlength=256)
    chi2 = ((counts - N / 256) ** 2 / (N / 256)).sum()
    assert chi2 < 400  # 255 degrees of freedom: mean 255, sd 22.6


def test_edges_rates_shapes_and_dtypes():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 5, 7)), jnp.bfloat16)
    k = jax.random.key(0)
    assert dropout(k, 0.0, x) is x
    assert not np.asarray(dropout(k, 1.0, x), np.float32).any()
    y = dropout(k, 0.5, x)
    assert y.shape == x.shape and y.dtype == jnp.bfloat16
    kept = np.asarray(y, np.float32) != 0
    np.testing.assert_allclose(np.asarray(y, np.float32)[kept], 2 * np.asarray(x, np.float32)[kept], rtol=1e-2)
    assert keep_threshold(0.25) == 2**30 and keep_threshold(0.9999999999999) == 2**32 - 1


def test_flax_module_needs_the_dropout_rng_only_in_training_and_gives_masked_gradients():
    module = Dropout(0.4)
    x = jnp.arange(1.0, 101.0)
    np.testing.assert_array_equal(module.apply({}, x, deterministic=True), x)
    y = module.apply({}, x, deterministic=False, rngs={"dropout": jax.random.key(5)})
    grad = jax.grad(lambda v: module.apply({}, v, deterministic=False, rngs={"dropout": jax.random.key(5)}).sum())(x)
    np.testing.assert_allclose(grad, np.where(np.asarray(y) != 0, 1 / 0.6, 0.0), rtol=1e-6)
    with pytest.raises(flax.errors.InvalidRngError):
        module.apply({}, x, deterministic=False)


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_threefry_bits_drop_at_the_rate_reproducibly_and_differ_from_the_hash(rate):
    """The "gpu" mask source, forced on CPU: the rate and scale hold, the mask is a function of the key."""
    ones = jnp.ones((N,), jnp.float32)
    with use_kernels("gpu"):
        fn = jax.jit(lambda k, x: dropout(k, rate, x))  # a fresh function: traced in this block
        y, again, other = (np.asarray(fn(k, ones)) for k in (jax.random.key(7), jax.random.key(7), jax.random.key(8)))
    kept = y != 0
    assert sigmas(kept.mean(), 1 - rate, N) < 5
    np.testing.assert_allclose(y[kept], 1 / (1 - rate), rtol=1e-6)
    np.testing.assert_array_equal(y, again)
    assert sigmas((kept & (other != 0)).mean(), (1 - rate) ** 2, N) < 5  # another key: an independent mask
    hashed = np.asarray(dropout_jit(jax.random.key(7), rate, ones)) != 0  # the "cpu" path, same key
    assert not np.array_equal(kept, hashed)


def test_dropout_bits_follow_the_kernel_choice():
    key = jax.random.key(3)
    with use_kernels("cpu"):
        np.testing.assert_array_equal(dropout_bits(key, (4, 5)), hash_bits(key, (4, 5)))
    with use_kernels("gpu"):
        np.testing.assert_array_equal(dropout_bits(key, (4, 5)), jax.random.bits(key, (4, 5), jnp.uint32))
