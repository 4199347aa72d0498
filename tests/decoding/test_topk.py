"""The chunked top-k of beam search gives exactly `jax.lax.top_k`'s values and indices, ties included; `top_k` takes
the chunked path under the "cpu" kernels and `lax.top_k` under the "gpu" ones (s2s_jax.backend)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax.backend import use_kernels
from s2s_jax.decoding.topk import DEFAULT_CHUNK, argmax, chunk_size, top_k, two_pass_top_k

_top_k = jax.jit(two_pass_top_k, static_argnums=1)
_reference = jax.jit(jax.lax.top_k, static_argnums=1)


def _check(x: np.ndarray, k: int) -> None:
    values, idx = _top_k(jnp.asarray(x), k)
    ref_values, ref_idx = _reference(jnp.asarray(x), k)
    np.testing.assert_array_equal(np.asarray(values), np.asarray(ref_values))
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx))


def test_chunk_size_prefers_a_divisor():
    assert chunk_size(5 * 5921) == 191  # 29605 = 5 * 31 * 191
    assert 29605 % chunk_size(29605) == 0
    assert chunk_size(4099) == DEFAULT_CHUNK  # prime: no divisor in range, a ragged tail


@pytest.mark.parametrize("n", [4099, 5 * 1152, 700])
def test_random_rows_match_lax_top_k(n):
    x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
    _check(x, 10)


def test_ties_go_to_the_lower_index_as_in_lax():
    # Few distinct values: every chunk has ties for its maximum, and the k-th place is tied too.
    x = np.random.default_rng(1).integers(0, 4, (4, 4099)).astype(np.float32)
    _check(x, 10)
    _check(np.zeros((2, 4099), np.float32), 10)


def test_masked_rows_and_infinities():
    # Beam search's last step: everything but one token per beam masked to one huge negative value.
    x = np.full((2, 5 * 1152), -1.0e9, np.float32)
    x[:, ::1152] = np.random.default_rng(2).standard_normal((2, 5))
    x[1, 3000:] = -np.inf
    x[1, 4000] = np.inf
    _check(x, 10)


def test_best_values_in_the_ragged_tail():
    x = np.random.default_rng(3).standard_normal((2, 4099)).astype(np.float32)
    x[:, -3:] = 100.0
    _check(x, 10)


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_each_kernel_choice_gives_lax_top_k(kind):
    """Both paths of the dispatching `top_k`, forced, on rows the chunked one does split (5 x 1152 > 2k chunks)."""
    x = np.random.default_rng(4).integers(0, 50, (3, 5 * 1152)).astype(np.float32)  # ties too
    with use_kernels(kind):
        jaxpr = str(jax.make_jaxpr(lambda a: top_k(a, 10))(x))
        values, idx = jax.jit(lambda a: top_k(a, 10))(jnp.asarray(x))  # a fresh function: traced in this block
    ref_values, ref_idx = _reference(jnp.asarray(x), 10)
    np.testing.assert_array_equal(np.asarray(values), np.asarray(ref_values))
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx))
    assert jaxpr.count("top_k") == (2 if kind == "cpu" else 1)  # chunk maxima + candidates, or one top_k


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_argmax_is_jnp_argmax_ties_and_masks_included(kind):
    """Greedy's pick: the vocabulary's width (5921, chunks of 191), ties among few values, masked rows (-1e9 and
    -inf everywhere but one id, or everywhere) and a ragged row width (4099, prime)."""
    rng = np.random.default_rng(5)
    wide = rng.standard_normal((4, 5921)).astype(np.float32)
    wide[1] = rng.integers(0, 3, 5921)  # ties: the first of the maxima
    wide[2] = -1.0e9
    wide[2, 4000] = -3.0
    wide[3] = -np.inf
    ragged = rng.standard_normal((3, 4099)).astype(np.float32)
    ragged[0, -2:] = 50.0
    with use_kernels(kind):
        for x in (wide, ragged):
            got = jax.jit(lambda a: argmax(a))(jnp.asarray(x))  # a fresh function: traced in this block
            assert got.dtype == jnp.int32
            np.testing.assert_array_equal(np.asarray(got), np.argmax(x, axis=-1))
