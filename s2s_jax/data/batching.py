"""Length-bucketed batches with a small fixed set of padded shapes, shuffled from (seed, epoch), resumable.

Jitted train steps compile once per input shape, so every batch has exactly
`batch_size` rows and a width from `buckets` (a pair goes to the smallest bucket
that holds both its source and its target plus bos/eos): a handful of shapes in
all. A bucket's last, partial batch is completed with that epoch's first
examples of the same bucket, so no example is dropped and no shape is added.

With `TokenBatches` (`--max-tokens N`, as fairseq's) in place of a batch size, a batch of width w
has `N // w` rows (rounded down to a multiple the devices and micro-batches need): about N padded
tokens whatever the bucket, still one shape per bucket.

The order is a pure function of (seed, epoch): examples are shuffled within
their buckets, cut into batches, and the batches of all buckets shuffled
together. Every epoch has the same number of batches, so global batch `n` is
batch `n % per_epoch` of epoch `n // per_epoch`; the iterator position is just
(epoch, index) and `state_dict()`/`load_state_dict()` save and restore it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from s2s_jax.errors import UserError

DEFAULT_BUCKETS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def bucket_width(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= length; past the largest, the next multiple of it (evaluation never drops data)."""
    for b in buckets:
        if length <= b:
            return int(b)
    top = int(buckets[-1])
    return -(-length // top) * top


@dataclasses.dataclass(frozen=True)
class TokenBatches:
    """Batches of about `max_tokens` padded tokens: `max_tokens // width` rows for a bucket of that width, rounded
    down to a multiple of `multiple` (devices x gradient-accumulation steps), and at least `multiple`."""

    max_tokens: int
    multiple: int = 1

    def rows(self, width: int) -> int:
        return max(self.multiple, self.max_tokens // width // self.multiple * self.multiple)


class BucketBatcher:
    """Yields (width, example indices [rows]) for examples of the given lengths (in tokens, bos/eos added); `rows`
    is `batch_size`, or per width when `batch_size` is a `TokenBatches`."""

    def __init__(self, lengths: Sequence[int], batch_size: int | TokenBatches, buckets: Sequence[int] = DEFAULT_BUCKETS,
                 seed: int = 0) -> None:
        if isinstance(batch_size, TokenBatches):
            if batch_size.max_tokens < 1 or batch_size.multiple < 1:
                raise UserError(f"max_tokens={batch_size.max_tokens} must be >= 1")
        elif batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be >= 1")
        if len(lengths) == 0:
            raise UserError("no training examples to batch")
        lengths = np.asarray(lengths)
        if lengths.max() > max(buckets):
            raise UserError(f"an example of {lengths.max()} tokens is longer than the largest bucket {max(buckets)}")
        self.batch_size, self.seed = batch_size, seed
        self.buckets = tuple(int(b) for b in sorted(buckets))
        widths = np.array([bucket_width(int(n), self.buckets) for n in lengths])
        self.members = {w: np.flatnonzero(widths == w) for w in self.buckets if np.any(widths == w)}
        self.rows = {w: batch_size.rows(w) if isinstance(batch_size, TokenBatches) else batch_size
                     for w in self.members}
        self.per_epoch = sum(-(-len(m) // self.rows[w]) for w, m in self.members.items())
        self.epoch, self.index = 0, 0
        self._cache: tuple[int, list[tuple[int, np.ndarray]]] | None = None

    @property
    def shapes(self) -> list[int]:
        """The widths batches can have (one jit compilation each)."""
        return sorted(self.members)

    def epoch_batches(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """All batches of `epoch`, in order: a function of (seed, epoch) only."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        batches = []
        for w, members in self.members.items():
            rng = np.random.default_rng([self.seed, epoch, w])
            order = members[rng.permutation(len(members))]
            rows = self.rows[w]
            short = -len(order) % rows
            order = np.concatenate([order, np.resize(order, short)])  # refill from the bucket's own start
            batches += [(w, order[i : i + rows]) for i in range(0, len(order), rows)]
        perm = np.random.default_rng([self.seed, epoch]).permutation(len(batches))
        out = [batches[i] for i in perm]
        self._cache = (epoch, out)
        return out

    def batch_at(self, n: int) -> tuple[int, np.ndarray]:
        """Global batch number `n` (0-based) of the endless sequence of epochs."""
        return self.epoch_batches(n // self.per_epoch)[n % self.per_epoch]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        return self

    def __next__(self) -> tuple[int, np.ndarray]:
        out = self.epoch_batches(self.epoch)[self.index]
        self.index += 1
        if self.index == self.per_epoch:
            self.epoch, self.index = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, Any]:
        """The position (and what fixes the order), JSON-able: enough to continue exactly where this stopped."""
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_size": self._size_json(),
                "per_epoch": self.per_epoch}

    def _size_json(self) -> Any:
        size = self.batch_size
        return dataclasses.asdict(size) if isinstance(size, TokenBatches) else size

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine = {"seed": self.seed, "batch_size": self._size_json(), "per_epoch": self.per_epoch}
        theirs = {k: state.get(k) for k in mine}
        if theirs != mine:
            raise UserError(f"batcher state {theirs} is for different data or settings than this one {mine}")
        if not 0 <= int(state["index"]) < self.per_epoch or int(state["epoch"]) < 0:
            raise UserError(f"batcher state position epoch {state['epoch']} index {state['index']} is out of range")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def pad_batch(
    src: Sequence[np.ndarray], tgt: Sequence[np.ndarray] | None, width: int, *, pad_id: int, bos_id: int, eos_id: int
) -> dict[str, np.ndarray]:
    """Token-id rows -> the batch dict the training steps take (see `s2s_jax.data.tasks`), every array `width` wide.

    tgt_in = bos + target, tgt_out = target + eos; with `tgt` None only src and src_lengths are built.
    """
    n = len(src)
    out = {"src": np.full((n, width), pad_id, np.int32), "src_lengths": np.zeros(n, np.int32)}
    for i, s in enumerate(src):
        out["src"][i, : len(s)] = s
        out["src_lengths"][i] = len(s)
    if tgt is None:
        return out
    out["tgt_in"] = np.full((n, width), pad_id, np.int32)
    out["tgt_out"] = np.full((n, width), pad_id, np.int32)
    out["tgt_lengths"] = np.zeros(n, np.int32)
    for i, t in enumerate(tgt):
        k = len(t)
        out["tgt_in"][i, 0] = bos_id
        out["tgt_in"][i, 1 : k + 1] = t
        out["tgt_out"][i, :k] = t
        out["tgt_out"][i, k] = eos_id
        out["tgt_lengths"][i] = k + 1
    return out
