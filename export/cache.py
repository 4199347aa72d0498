"""The decode state of a `cache_state` export (Transformer KV caches): numpy buffers written in place.

Why: a step that takes the cache and returns a longer copy of it (as the runtime did up to export version 2)
holds two caches at once and copies the whole cache every step, and a beam reorder through a graph holds two
more. At batch 64, beam 5 the state of the Multi30k Transformer is 110 MB at its longest, so decoding peaked at
350 MB of RSS, 1.44x the bound of issue 17. Here each tensor of the state is one numpy buffer of `capacity`
positions on its cache axis, of which the first `length` are decoded; the step graph reads the buffers where
they lie (bound as OrtValues over the same memory, no copy) with `length` as an input, and returns only the new
position (`rows`), which `written` puts at position `length`; or (export version 4) the step writes that
position itself, its present outputs bound to the same memory (export/attention_op.py; `reserve`, then
`advanced`). The buffers grow by CHUNK positions when full, so they hold at most CHUNK - 1 unused positions,
and a beam reorder gathers one tensor at a time.

A `Cache` is a value for the search (export/search.py treats the state as opaque): `written` returns a new
`Cache` one position longer over the same buffers. Positions at or past an older `Cache`'s length may be
overwritten, so a state must not be stepped twice, and `take` consumes the cache it gathers from; the search
does neither. Imports numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CHUNK = 8  # positions added when a buffer is full: fewer than this unused, a reallocation every CHUNK steps


class Cache:
    """Buffers [rows, ..., capacity, ...] (the cache axis `axis`) of which positions < `length` are decoded."""

    def __init__(self, spec: dict[str, Any], buffers: list[np.ndarray], length: int, views: Any = None) -> None:
        """views: what a caller made of these buffers (the runtime's OrtValues over them), kept while the buffers
        are the same ones, so that it is made once per allocation rather than once per step."""
        self.spec, self.buffers, self.length, self.views = spec, buffers, length, views
        self.axis = int(spec["axis"])

    @classmethod
    def zeros(cls, spec: dict[str, Any], rows: int, capacity: int = CHUNK) -> Cache:
        """An empty cache for `rows` rows. spec: model.json's `cache` (axis, shapes with 0 for the rows and
        positions, the output of the stacked rows, the length input)."""
        axis = int(spec["axis"])
        buffers = []
        for shape in spec["shapes"].values():
            full = [rows, *shape[1:]]
            full[axis] = capacity
            buffers.append(np.zeros(full, np.dtype(spec["dtype"])))
        return cls(spec, buffers, 0)

    @property
    def capacity(self) -> int:
        return self.buffers[0].shape[self.axis]

    def feeds(self) -> dict[str, np.ndarray]:
        """The step's cache inputs: every buffer by its state name, and the length."""
        feeds = dict(zip(self.spec["shapes"], self.buffers, strict=True))
        feeds[self.spec["length"]] = np.array(self.length, np.int64)
        return feeds

    @property
    def full(self) -> bool:
        """Whether position `length` needs the buffers to grow (`reserve`)."""
        return self.length == self.capacity

    def reserve(self) -> None:
        """Room for position `length`: the buffers grow by CHUNK positions when full. A step that writes the buffers
        itself (model.json's `cache` has `present`) needs it before it runs."""
        if self.full:
            self.views = None  # they hold the old buffers, which should go as each is copied
            self._grow(self.capacity + CHUNK)

    def advanced(self) -> Cache:
        """This cache one position longer over the same buffers, once a step has written position `length`."""
        return Cache(self.spec, self.buffers, self.length + 1, self.views)

    def written(self, rows: Sequence[np.ndarray]) -> Cache:
        """This cache with the step's new position `rows` (one per buffer, size 1 on the cache axis) at position
        `length`, in place; the buffers first grow by CHUNK positions when full."""
        self.reserve()
        at = [slice(None)] * self.buffers[0].ndim
        at[self.axis] = slice(self.length, self.length + 1)
        for buffer, row in zip(self.buffers, rows, strict=True):
            buffer[tuple(at)] = row
        return self.advanced()

    def _grow(self, capacity: int) -> None:
        """Replace each buffer by one of `capacity` positions holding the same decoded ones, one at a time, so
        that the old buffer goes before the next is copied."""
        at = [slice(None)] * self.buffers[0].ndim
        at[self.axis] = slice(0, self.length)
        for i, buffer in enumerate(self.buffers):
            shape = list(buffer.shape)
            shape[self.axis] = capacity
            new = np.zeros(shape, buffer.dtype)
            new[tuple(at)] = buffer[tuple(at)]
            self.buffers[i] = new

    def take(self, rows: np.ndarray) -> Cache:
        """Row i from row rows[i] of every buffer (beams repeated or reordered, finished rows dropped). Consumes
        this cache: its buffers go one at a time as they are gathered, so only one tensor is ever held twice."""
        rows = np.asarray(rows, np.int64)
        taken: list[np.ndarray] = []
        self.views = None  # they hold the buffers too
        while self.buffers:
            buffer = self.buffers.pop(0)
            out = np.empty((len(rows), *buffer.shape[1:]), buffer.dtype)
            np.take(buffer, rows, axis=0, out=out, mode="clip")  # "raise" would gather into a temporary first
            taken.append(out)
            del buffer
        return Cache(self.spec, taken, self.length)
