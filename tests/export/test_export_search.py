"""`export.search.top_k`: the partial-sort fast path picks exactly what a stable full sort picks."""

import numpy as np
import pytest

from export.search import top_k


def _reference(x, k):
    idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, idx, axis=-1), idx


@pytest.mark.parametrize("k", [1, 2, 5, 10, 37, 40])
def test_top_k_matches_a_stable_sort_with_ties_and_minus_inf(k):
    rng = np.random.default_rng(k)
    x = rng.integers(-4, 4, size=(3, 7, 37)).astype(np.float32)  # many ties, also across the cut
    x[0, 0] = -np.inf
    x[1, 2, 5:] = -np.inf
    x[2] = rng.normal(size=(7, 37)).astype(np.float32)
    got_v, got_i = top_k(x, k)
    want_v, want_i = _reference(x, k)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_v, want_v)
