"""Training batches shaped like Multi30k's: real sentence lengths, random token ids, the trainer's bucketing.

Throughput depends on how many positions are padding and on which widths get
compiled, so a benchmark batch should look like a real one. The lengths come
from the Multi30k training files (`lc.norm.tok`: whitespace tokens), the
batches from the same `BucketBatcher` and `pad_batch` the `train` command uses
(bos/eos added, each pair in the smallest bucket holding both sides), and only
the token ids are random: which ids a batch holds changes no step's cost.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.data.batching import BucketBatcher, pad_batch

Batch = dict[str, np.ndarray]


def multi30k_lengths(manual_dir: str | Path, src_lang: str, tgt_lang: str) -> tuple[np.ndarray, np.ndarray]:
    """Token counts of the Multi30k train pairs (`train.lc.norm.tok.{lang}`, gzipped or not) in `manual_dir`."""
    counts = []
    for lang in (src_lang, tgt_lang):
        name = Path(manual_dir) / f"train.lc.norm.tok.{lang}"
        path = next((p for p in (name, name.with_name(name.name + ".gz")) if p.is_file()), None)
        if path is None:
            raise SystemExit(f"{name}[.gz] not found: pass --manual-dir with the Multi30k files "
                             "(the directory `s2s-jax train --data multi30k:... --manual-dir` reads)")
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            counts.append(np.array([len(line.split()) for line in f], np.int64))
    if len(counts[0]) != len(counts[1]):
        raise SystemExit(f"{manual_dir}: {len(counts[0])} {src_lang} lines but {len(counts[1])} {tgt_lang} lines")
    keep = (counts[0] > 0) & (counts[1] > 0)
    return counts[0][keep], counts[1][keep]


def training_batches(cfg: ModelConfig, src_lengths: np.ndarray, tgt_lengths: np.ndarray, *, batch_size: int,
                     n: int, buckets: Sequence[int], seed: int) -> list[Batch]:
    """The first `n` batches of epoch 0 as the trainer would cut them, filled with random non-special ids."""
    batcher = BucketBatcher(np.maximum(src_lengths, tgt_lengths + 1), batch_size, buckets, seed)
    rng = np.random.default_rng(seed)
    low = max(cfg.pad_id, cfg.bos_id, cfg.eos_id) + 1

    def ids(length: int, vocab: int) -> np.ndarray:
        return rng.integers(low, vocab, length).astype(np.int32)

    out = []
    for i in range(n):
        width, rows = batcher.batch_at(i)
        src = [ids(src_lengths[r], cfg.src_vocab_size) for r in rows]
        tgt = [ids(tgt_lengths[r], cfg.tgt_vocab_size) for r in rows]
        out.append(pad_batch(src, tgt, width, pad_id=cfg.pad_id, bos_id=cfg.bos_id, eos_id=cfg.eos_id))
    return out
