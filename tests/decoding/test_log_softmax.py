"""Both log-softmax forms (s2s_jax.decoding.common): the unfused one XLA CPU prefers and `jax.nn.log_softmax`, as
`log_softmax` picks them per kernel choice (s2s_jax.backend), agree to float rounding and normalize."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from s2s_jax.backend import use_kernels
from s2s_jax.decoding.common import log_softmax, unfused_log_softmax


def _logits() -> np.ndarray:
    x = np.random.default_rng(0).normal(scale=8.0, size=(6, 5921)).astype(np.float32)
    x[0] += 60.0  # a shifted row: both subtract the row max first
    x[1, :100] = -1.0e9  # beam search's masked candidates
    return x


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_each_kernel_choice_matches_the_reference(kind):
    x = _logits()
    with use_kernels(kind):
        out = np.asarray(jax.jit(lambda a: log_softmax(a))(x))  # a fresh function: traced in this block
    x64 = x.astype(np.float64)
    top = x64.max(axis=-1, keepdims=True)
    ref = x64 - top - np.log(np.exp(x64 - top).sum(axis=-1, keepdims=True))  # float64 numpy
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=2e-5)
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0, rtol=1e-5)


def test_the_forms_differ_only_by_rounding_and_share_the_argmax():
    x = _logits()
    fused, unfused = np.asarray(jax.nn.log_softmax(x, axis=-1)), np.asarray(jax.jit(unfused_log_softmax)(x))
    np.testing.assert_allclose(fused, unfused, rtol=1e-6, atol=2e-5)
    np.testing.assert_array_equal(fused.argmax(-1), unfused.argmax(-1))
    with use_kernels("gpu"):
        np.testing.assert_array_equal(np.asarray(jax.jit(lambda a: log_softmax(a))(x)), fused)
