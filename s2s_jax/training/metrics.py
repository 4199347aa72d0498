"""Sequence-level metrics on decoded token arrays (numpy, outside jit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def exact_match(pred: np.ndarray, pred_lengths: np.ndarray, tgt: np.ndarray, tgt_lengths: np.ndarray) -> np.ndarray:
    """[B] bool: the decoded row equals the target row, eos included, nothing more and nothing less."""
    pred, tgt = np.asarray(pred), np.asarray(tgt)
    pred_lengths, tgt_lengths = np.asarray(pred_lengths), np.asarray(tgt_lengths)
    width = max(pred.shape[1], tgt.shape[1])
    pred = np.pad(pred, ((0, 0), (0, width - pred.shape[1])), constant_values=-1)
    tgt = np.pad(tgt, ((0, 0), (0, width - tgt.shape[1])), constant_values=-1)
    inside = np.arange(width)[None, :] < tgt_lengths[:, None]
    same = np.all((pred == tgt) | ~inside, axis=1)
    return same & (pred_lengths == tgt_lengths)


def sum_in_chunks(
    step: Callable[[Any, dict[str, np.ndarray]], dict[str, Any]], params: Any, batch: dict[str, np.ndarray], chunk: int
) -> dict[str, float]:
    """Add up a jitted eval step's sums over fixed-size chunks of `batch`; filler rows get tgt_lengths 0,
    so the length-based loss mask leaves them out."""
    n = len(batch["src"])
    chunk = min(chunk, n)
    totals: dict[str, float] = {}
    for start in range(0, n, chunk):
        part = {k: v[start : start + chunk] for k, v in batch.items()}
        missing = chunk - len(part["src"])
        if missing:
            part = {k: np.concatenate([v, np.repeat(v[:1], missing, axis=0)]) for k, v in part.items()}
            part["tgt_lengths"][-missing:] = 0
        for k, v in step(params, part).items():
            totals[k] = totals.get(k, 0.0) + float(v)
    return totals
