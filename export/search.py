"""`search(step, enc, state, ...)` in numpy: the search contract of `s2s_jax.decoding.search`, for onnxruntime.

DESIGN.md, "Decoding: one search contract". The model is a `step(enc, token, state) ->
(log_probs [N, V], state)` callable over lists of batch-first numpy arrays, so the same
search drives onnxruntime sessions (export.runtime), the torch_ref mirror
(`export.graphs.numpy_stepper`: tests, bench) or anything else. Imports numpy only.

Same signature and semantics as the JAX `search` (no sampling: temperature is refused),
and, for the same step function, the same tokens and the same scores: the arithmetic
is float32 throughout and `top_k` breaks ties by lower index (as `jax.lax.top_k` and
`jnp.argmax` do).
- beam 1 is greedy (`s2s_jax/decoding/sampling.py` at temperature 0): argmax, pad
  after eos, stop when every row has emitted eos or after max_len tokens; with
  per-row bounds, eos forced on a row's last allowed step;
- beam > 1 (`s2s_jax/decoding/beam.py`): K live and K finished hypotheses per row;
  the first step runs once per sentence; the top 2K candidates always hold K that do
  not end in eos; eos candidates are finalized only if among the top K; eos is forced
  on a row's last allowed step; the loop stops once no live hypothesis can beat its
  row's worst finished one; n-best results, best first.
Scores, for both: the sum of the chosen tokens' log-probs (through eos) over the GNMT
penalty ((5 + length) / 6) ** alpha.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

NEG_INF = np.float32(-1.0e9)
Arrays = list[np.ndarray]
StepFn = Callable[[Arrays, np.ndarray, Arrays], tuple[np.ndarray, Arrays]]
ReorderFn = Callable[[Arrays, np.ndarray], Arrays]


class SearchResult(NamedTuple):
    """tokens [B, K, L] (pad after eos), lengths [B, K] (up to and including eos, or L without one), scores [B, K]
    (length-penalised log-probs); best first, K = beam."""

    tokens: np.ndarray
    lengths: np.ndarray
    scores: np.ndarray


def length_penalty(length: np.ndarray, alpha: float) -> np.ndarray:
    return ((np.float32(5.0) + np.asarray(length, np.float32)) / np.float32(6.0)) ** np.float32(alpha)


def top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest k along the last axis, ties to the lower index (jax.lax.top_k's order).

    A full sort of beam x vocab scores per step dominated beam search (193 ms vs 28 ms at
    batch 64, beam 5, vocab 5921), so the k largest are found by `argpartition` and only they
    are sorted. Where values tie across the cut (e.g. rows of -inf), which k is not decided by
    the partition: those rows take the stable full sort.
    """
    n = x.shape[-1]
    if k >= n:
        idx = np.argsort(-x, axis=-1, kind="stable")[..., :k]
        return np.take_along_axis(x, idx, axis=-1), idx
    flat = x.reshape(-1, n)
    part = np.argpartition(-flat, k - 1, axis=-1)[:, :k]
    vals = np.take_along_axis(flat, part, axis=-1)
    idx = np.take_along_axis(part, np.lexsort((part, -vals), axis=-1), axis=-1)
    ties = (flat >= vals.min(axis=-1, keepdims=True)).sum(axis=-1) > k
    if ties.any():
        idx[ties] = np.argsort(-flat[ties], axis=-1, kind="stable")[:, :k]
    idx = idx.reshape(x.shape[:-1] + (k,))
    return np.take_along_axis(x, idx, axis=-1), idx


def repeat_beams(arrays: Sequence[np.ndarray], beam: int) -> Arrays:
    """[B, ...] -> [B * beam, ...], each row repeated `beam` times."""
    return [np.repeat(a, beam, axis=0) for a in arrays]


def take_rows(arrays: Sequence[np.ndarray], rows: np.ndarray) -> Arrays:
    """The default state reorder: row i of every array taken from row rows[i] (a state may have a 0-size axis)."""
    return [np.take(a, rows, axis=0) for a in arrays]


def parent_rows(parents: np.ndarray, beam: int) -> np.ndarray:
    """Beams `parents` [B, K'] within each sentence -> their rows [B * K'] in a [B * beam, ...] state."""
    return (np.arange(parents.shape[0])[:, None] * beam + parents).reshape(-1)


def search(step: StepFn, enc: Arrays, state: Arrays, *, batch: int, beam: int = 1, max_len: int, bos_id: int,
           eos_id: int, pad_id: int, alpha: float = 0.0, row_max_len: np.ndarray | None = None,
           reorder: ReorderFn | None = None, temperature: float = 0.0) -> SearchResult:
    """n-best hypotheses per sentence, best first: tokens [B, K, max_len], lengths [B, K], scores [B, K] (K = beam).

    enc, state: the encoder tensors and initial decode state, batch B (repeated to B * beam here).
    row_max_len [B]: each row's bound, <= max_len (eos forced on its last allowed step); without it greedy may
    end a row without eos (length max_len), beam search forces eos at max_len. reorder: `(state, rows) ->
    state`, row i from row rows[i] (default `take_rows`). temperature: only 0 (no sampling in numpy).
    """
    if beam < 1:
        raise ValueError(f"beam={beam} must be >= 1")
    if temperature != 0:
        raise ValueError(f"temperature={temperature}: the numpy search does not sample (use s2s_jax's search)")
    limit = np.full(batch, max_len, np.int32) if row_max_len is None else np.minimum(row_max_len, max_len)
    if beam == 1:
        return _greedy(step, enc, state, batch=batch, max_len=max_len, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                       alpha=alpha, limit=None if row_max_len is None else limit)
    return _beam(step, enc, state, batch=batch, beam=beam, max_len=max_len, bos_id=bos_id, eos_id=eos_id,
                 pad_id=pad_id, alpha=alpha, limit=limit, reorder=take_rows if reorder is None else reorder)


def _greedy(step: StepFn, enc: Arrays, state: Arrays, *, batch: int, max_len: int, bos_id: int, eos_id: int,
            pad_id: int, alpha: float, limit: np.ndarray | None) -> SearchResult:
    token = np.full(batch, bos_id, np.int64)
    done = np.zeros(batch, bool)
    tokens = np.full((batch, max_len), pad_id, np.int32)
    logp_sum = np.zeros(batch, np.float32)
    t = 0
    while t < max_len and not done.all():
        logp, state = step(enc, token, state)
        logp = logp.astype(np.float32, copy=False)
        if limit is not None:
            last = (t + 1 >= limit)[:, None]
            logp = np.where(last & (np.arange(logp.shape[-1]) != eos_id), NEG_INF, logp)
        best = np.argmax(logp, axis=-1)
        logp_sum += np.where(done, np.float32(0.0), logp[np.arange(batch), best])  # beam search's order of sums
        nxt = np.where(done, pad_id, best)
        tokens[:, t] = nxt
        done |= nxt == eos_id
        token = nxt.astype(np.int64)
        t += 1
    is_eos = tokens == eos_id
    lengths = np.where(is_eos.any(axis=1), is_eos.argmax(axis=1) + 1, max_len).astype(np.int32)
    scores = (logp_sum / length_penalty(lengths, alpha)).astype(np.float32)
    return SearchResult(tokens[:, None], lengths[:, None], scores[:, None])


def _beam(step: StepFn, enc: Arrays, state: Arrays, *, batch: int, beam: int, max_len: int, bos_id: int,
          eos_id: int, pad_id: int, alpha: float, limit: np.ndarray, reorder: ReorderFn) -> SearchResult:
    init, enc_k = state, repeat_beams(enc, beam)
    tokens = np.zeros((batch, beam, max_len + 1), np.int32)
    tokens[:, :, 0] = bos_id
    live_tokens, done_tokens = tokens, tokens.copy()
    live_logp = np.tile(np.array([0.0] + [NEG_INF] * (beam - 1), np.float32), (batch, 1))
    done_scores = np.full((batch, beam), NEG_INF, np.float32)
    done_lengths = np.zeros((batch, beam), np.int32)
    best_len = limit if alpha >= 0 else None

    def can_improve(t: int) -> bool:
        length = best_len if best_len is not None else np.full(batch, t + 1)
        best_live = live_logp[:, 0] / length_penalty(length, alpha)
        return bool(np.any((best_live > done_scores[:, -1]) & (t < limit)))

    t = 0
    while t < max_len and can_improve(t):
        if t == 0:  # every beam holds bos and the initial state: run the step once per sentence, as JAX does
            logp, state = step(enc, np.full(batch, bos_id, np.int64), init)
            logp, state = np.repeat(logp, beam, axis=0), repeat_beams(state, beam)
        else:
            logp, state = step(enc_k, live_tokens[:, :, t].reshape(-1).astype(np.int64), state)
        logp = logp.astype(np.float32, copy=False).reshape(batch, beam, -1)
        vocab = logp.shape[-1]
        last = (t + 1 >= limit)[:, None, None]
        logp = np.where(last & (np.arange(vocab) != eos_id), NEG_INF, logp)
        cand = (live_logp[:, :, None] + logp).reshape(batch, beam * vocab)

        top_logp, top_idx = top_k(cand, 2 * beam)
        src_beam, tok = top_idx // vocab, top_idx % vocab
        new_tokens = np.take_along_axis(live_tokens, src_beam[:, :, None], axis=1)
        new_tokens[:, :, t + 1] = tok
        is_eos = tok == eos_id
        alive = t < limit

        live_logp, pick = top_k(np.where(is_eos, NEG_INF, top_logp), beam)
        live_tokens = np.take_along_axis(new_tokens, pick[:, :, None], axis=1)
        state = reorder(state, parent_rows(np.take_along_axis(src_beam, pick, axis=1), beam))

        finish = is_eos & (np.arange(2 * beam) < beam)[None, :] & alive[:, None]
        eos_scores = np.where(finish, top_logp / length_penalty(np.float32(t + 1), alpha), NEG_INF)
        all_scores = np.concatenate([done_scores, eos_scores], axis=1)
        all_tokens = np.concatenate([done_tokens, new_tokens], axis=1)
        all_lengths = np.concatenate([done_lengths, np.full(eos_scores.shape, t + 1, np.int32)], axis=1)
        done_scores, keep = top_k(all_scores, beam)
        done_tokens = np.take_along_axis(all_tokens, keep[:, :, None], axis=1)
        done_lengths = np.take_along_axis(all_lengths, keep, axis=1)
        t += 1

    out = done_tokens[:, :, 1:]
    out = np.where(np.arange(max_len)[None, None, :] < done_lengths[:, :, None], out, pad_id).astype(np.int32)
    return SearchResult(tokens=out, lengths=done_lengths, scores=done_scores)
