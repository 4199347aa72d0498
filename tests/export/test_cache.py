"""export/cache.py: the in-place buffers of a cache state, against a plain list of the positions written."""

from __future__ import annotations

import numpy as np
import pytest

from export.cache import CHUNK, Cache

SPEC = {"axis": 2, "length": "length", "rows": "cache_rows", "dtype": "float32",
        "shapes": {"state.keys.0": [0, 2, 0, 3], "state.values.0": [0, 2, 0, 3]}}


def rows_at(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [rng.normal(size=(n, 2, 1, 3)).astype(np.float32) for _ in SPEC["shapes"]]


def test_written_fills_positions_in_place_and_grows_by_chunks():
    rng = np.random.default_rng(0)
    cache, history = Cache.zeros(SPEC, 4), []
    assert cache.capacity == CHUNK and [b.shape for b in cache.buffers] == [(4, 2, CHUNK, 3)] * 2
    first = cache.buffers[0]
    for t in range(CHUNK + 2):
        rows = rows_at(rng, 4)
        history.append(rows)
        cache = cache.written(rows)
        if t < CHUNK:
            assert cache.buffers[0] is first  # written where it lies, no copy
    assert cache.length == CHUNK + 2 and cache.capacity == 2 * CHUNK
    for i, buffer in enumerate(cache.buffers):
        expected = np.concatenate([h[i] for h in history], axis=2)
        np.testing.assert_array_equal(buffer[:, :, : cache.length], expected)
    feeds = cache.feeds()
    assert set(feeds) == {*SPEC["shapes"], "length"} and int(feeds["length"]) == CHUNK + 2


def test_take_gathers_rows_and_consumes_the_old_cache():
    rng = np.random.default_rng(1)
    cache = Cache.zeros(SPEC, 3)
    for _ in range(5):
        cache = cache.written(rows_at(rng, 3))
    before = [b.copy() for b in cache.buffers]
    rows = np.array([2, 2, 0, 1, 0])
    taken = cache.take(rows)
    assert cache.buffers == []  # consumed: its memory went as the gather went
    assert taken.length == 5 and taken.capacity == CHUNK
    for b, old in zip(taken.buffers, before, strict=True):
        np.testing.assert_array_equal(b[:, :, :5], old[rows, :, :5])
    taken = taken.written(rows_at(rng, 5))
    assert taken.length == 6


def test_a_row_of_the_wrong_shape_is_refused():
    cache = Cache.zeros(SPEC, 2)
    with pytest.raises(ValueError):
        cache.written(rows_at(np.random.default_rng(2), 3))
