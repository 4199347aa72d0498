"""The numpy side of `s2s_jax/decoding/constraints.py` and of sampling's support: what may be chosen at a step.

The runtime may not import s2s_jax (DESIGN.md), so these rules are written twice; the tests hold the two to
identical tokens and scores (tests/decoding/test_search_options.py):
- `constrain`: n-gram blocking (eos never blocked), the forced prefix, eos on a row's last step (wins over the
  prefix), each a log-prob set to NEG_INF before the search adds the running score, as in JAX;
- `sampling_logits`: logp / temperature with NEG_INF outside the top-k and the top-p nucleus, the same support
  and probabilities as `s2s_jax.decoding.sampling.sampling_logits`;
- `draw`: one token per row from its own generator, so a row's draws do not depend on its batch. The draws are
  numpy's, not JAX's: a seed reproduces the runtime's output, not s2s-jax's (the distribution is the same).
Imports numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NEG_INF = np.float32(-1.0e9)


def ngram_blocked(generated: np.ndarray, t: int, n: int, vocab: int) -> np.ndarray:
    """[N, V] bool: the tokens that would repeat an n-gram of the first t tokens of `generated` [N, L]."""
    rows = generated.shape[0]
    blocked = np.zeros((rows, vocab), bool)
    if t < n:
        return blocked
    context = generated[:, t - n + 1:t]  # [N, n - 1]
    starts = t - n + 1  # windows generated[j : j + n], j + n - 1 < t
    match = np.ones((rows, starts), bool)
    for i in range(n - 1):
        match &= generated[:, i:i + starts] == context[:, i:i + 1]
    r, j = np.nonzero(match)
    blocked[r, generated[r, j + n - 1]] = True
    return blocked


def constrain(logp: np.ndarray, t: int, *, eos_id: int, last: np.ndarray | None = None,
              generated: np.ndarray | None = None, no_repeat_ngram: int = 0, prefix: np.ndarray | None = None,
              prefix_lengths: np.ndarray | None = None) -> np.ndarray:
    """logp [N, V] (float32) with disallowed tokens at NEG_INF; see s2s_jax/decoding/constraints.py."""
    vocab = logp.shape[-1]
    ids = np.arange(vocab)
    banned = np.zeros(logp.shape, bool)
    if no_repeat_ngram > 0 and generated is not None:
        banned |= ngram_blocked(generated, t, no_repeat_ngram, vocab) & (ids != eos_id)
    if prefix is not None:
        forced = prefix[:, min(t, prefix.shape[1] - 1)]
        in_prefix = t < prefix_lengths
        if last is not None:
            in_prefix = in_prefix & ~last
        banned |= in_prefix[:, None] & (ids[None, :] != forced[:, None])
    if last is not None:
        banned = np.where(last[:, None], ids[None, :] != eos_id, banned)
    return np.where(banned, NEG_INF, logp.astype(np.float32, copy=False))


def sampling_logits(logp: np.ndarray, temperature: float, top_k: int = 0, top_p: float = 1.0) -> np.ndarray:
    """[N, V] log-probs -> logp / temperature, NEG_INF outside the top-k and the top-p nucleus (a token is kept
    while the probability of the tokens above it is below top_p; ties at either cut kept)."""
    logits = logp.astype(np.float32) / np.float32(temperature)
    if top_k > 0:
        kth = -np.partition(-logits, top_k - 1, axis=-1)[:, top_k - 1:top_k]
        logits = np.where(logits < kth, NEG_INF, logits)
    if top_p < 1.0:
        ranked = -np.sort(-logits, axis=-1)
        exp = np.exp(ranked - ranked[:, :1])
        probs = exp / exp.sum(axis=-1, keepdims=True)
        above = np.cumsum(probs, axis=-1) - probs
        cut = np.where(above < np.float32(top_p), ranked, np.inf).min(axis=-1, keepdims=True)
        logits = np.where(logits < cut, NEG_INF, logits)
    return logits


def row_generators(seeds: Sequence[int | Sequence[int]]) -> list[np.random.Generator]:
    """One generator per row, from its seed: an int or a sequence of ints (the runtime gives (--seed, the
    sentence's crc32))."""
    return [np.random.default_rng([int(x) for x in np.atleast_1d(s)]) for s in seeds]


def draw(logits: np.ndarray, generators: list[np.random.Generator]) -> np.ndarray:
    """[N] int64 tokens, row i drawn from softmax(logits[i]) with generators[i] (one uniform a step, inverted
    through the row's cumulative distribution in id order)."""
    probs = np.exp(logits.astype(np.float64) - logits.max(axis=-1, keepdims=True))
    cdf = np.cumsum(probs, axis=-1)
    u = np.array([g.random() for g in generators]) * cdf[:, -1]
    picked = np.array([np.searchsorted(row, x, side="right") for row, x in zip(cdf, u, strict=True)], np.int64)
    return np.minimum(picked, logits.shape[-1] - 1)
