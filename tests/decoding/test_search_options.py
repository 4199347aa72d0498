"""The search's options beyond beam and length, in both searches (s2s_jax's JAX `search`, export's numpy one):
no-repeat n-gram blocking, a forced prefix, per-token scores, and sampling with temperature, top-k and top-p.

Over the lookup step of test_search.py (bit-identical log-probs in both), so any difference is the searches'
own: n-gram blocking and the prefix give identical tokens, lengths and scores; sampling is reproducible from its
seed in each and both sample from the same support with the same probabilities; and a sentence's output does not
depend on the other sentences searched with it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from export import search as np_search
from export import search_rules
from s2s_jax.decoding import sampling
from s2s_jax.decoding.search import search
from tests.decoding.test_search import BOS, EOS, LIMITS, PAD, TABLE, B, L, V, jax_step, np_step

PREFIX = np.array([[5, 6, 7], [3, 0, 0], [4, 4, 0], [0, 0, 0], [8, 3, 5], [6, 0, 0]], np.int32)
PREFIX_LENGTHS = np.array([3, 1, 2, 0, 3, 1], np.int32)


def options(rows, ngram, prefixed):
    return dict(no_repeat_ngram=ngram, prefix=PREFIX[rows] if prefixed else None,
                prefix_lengths=PREFIX_LENGTHS[rows] if prefixed else None)


@functools.partial(jax.jit, static_argnames=("beam", "alpha", "ngram", "prefixed", "temperature", "top_k", "top_p"))
def jax_search(rows, key, *, beam=1, alpha=0.0, ngram=0, prefixed=False, temperature=0.0, top_k=0, top_p=1.0):
    n = rows.shape[0]
    init = (jnp.zeros(n, jnp.int32), jnp.zeros(n, jnp.int32))
    return search(jax_step, rows, init, batch=n, beam=beam, max_len=L, bos_id=BOS, eos_id=EOS, pad_id=PAD,
                  alpha=alpha, row_max_len=jnp.asarray(LIMITS)[rows] + 3, shrink_rows=2, temperature=temperature,
                  top_k=top_k, top_p=top_p, key=key, no_repeat_ngram=ngram,
                  prefix=jnp.asarray(PREFIX)[rows] if prefixed else None,
                  prefix_lengths=jnp.asarray(PREFIX_LENGTHS)[rows] if prefixed else None)


def numpy_search(rows, *, beam=1, alpha=0.0, ngram=0, prefixed=False, **sample):
    n = len(rows)
    rules = np_search.Rules(**options(rows, ngram, prefixed), **sample)
    return np_search.search(np_step, [rows], [np.zeros(n, np.int32), np.zeros(n, np.int32)], batch=n, beam=beam,
                            max_len=L, bos_id=BOS, eos_id=EOS, pad_id=PAD, alpha=alpha, row_max_len=LIMITS[rows] + 3,
                            rules=rules)


ALL = np.arange(B, dtype=np.int32)
KEYS = jax.random.key(0)


def assert_same(j, n):
    np.testing.assert_array_equal(np.asarray(j.tokens), n.tokens)
    np.testing.assert_array_equal(np.asarray(j.lengths), n.lengths)
    np.testing.assert_allclose(np.asarray(j.scores), n.scores, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(j.token_scores), n.token_scores, rtol=1e-5, atol=1e-5)


def ngrams(row, n):
    return [tuple(row[i:i + n]) for i in range(len(row) - n + 1)]


@pytest.mark.parametrize("beam,alpha", [(1, 0.0), (3, 0.6)])
@pytest.mark.parametrize("ngram", [1, 2])
def test_ngram_blocking_is_the_same_in_both_and_blocks(beam, alpha, ngram):
    j, n = jax_search(ALL, KEYS, beam=beam, alpha=alpha, ngram=ngram), numpy_search(ALL, beam=beam, alpha=alpha,
                                                                                     ngram=ngram)
    assert_same(j, n)
    free = numpy_search(ALL, beam=beam, alpha=alpha)
    repeated = 0
    for b in range(B):
        for k in range(beam):
            out = n.tokens[b, k, : n.lengths[b, k]].tolist()
            body = out[:-1] if out and out[-1] == EOS else out  # eos is never blocked
            assert len(set(ngrams(body, ngram))) == len(ngrams(body, ngram)), (b, k, out)
            unblocked = free.tokens[b, k, : free.lengths[b, k]].tolist()
            repeated += len(set(ngrams(unblocked, ngram))) < len(ngrams(unblocked, ngram))
    assert repeated > 0  # without blocking some outputs repeat: the test is not vacuous


@pytest.mark.parametrize("beam,ngram", [(1, 0), (4, 0), (4, 2)])
def test_prefix_is_forced_and_the_same_in_both(beam, ngram):
    j, n = (jax_search(ALL, KEYS, beam=beam, ngram=ngram, prefixed=True),
            numpy_search(ALL, beam=beam, ngram=ngram, prefixed=True))
    assert_same(j, n)
    for b in range(B):
        for k in range(beam):
            np.testing.assert_array_equal(n.tokens[b, k, : PREFIX_LENGTHS[b]], PREFIX[b, : PREFIX_LENGTHS[b]])
    free = numpy_search(ALL, beam=beam, ngram=ngram)
    assert not np.array_equal(free.tokens, n.tokens)


def test_token_scores_sum_to_the_score():
    for beam in (1, 3):
        r = numpy_search(ALL, beam=beam, prefixed=True)
        np.testing.assert_allclose(r.token_scores.sum(-1), r.scores, rtol=1e-5)  # alpha 0: the plain sum
        assert np.all(r.token_scores[np.arange(L)[None, None] >= r.lengths[..., None]] == 0)


@pytest.mark.parametrize("kind", ["ngram", "prefix", "sample"])
@pytest.mark.parametrize("beam", [1, 3])
def test_a_sentence_does_not_depend_on_its_batch(kind, beam):
    """Each sentence searched alone == searched with all six (in both searches), for every new option."""
    if kind == "sample" and beam > 1:
        pytest.skip("sampling takes one hypothesis")
    opts = dict(ngram=2) if kind == "ngram" else dict(prefixed=True) if kind == "prefix" else {}
    seeds = 100 + np.arange(B)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    sample = dict(temperature=1.5, top_p=0.9) if kind == "sample" else {}
    together_j = jax_search(ALL, keys, beam=beam, **opts, **sample)
    together_n = numpy_search(ALL, beam=beam, **opts, **sample, **({"seeds": seeds} if sample else {}))
    for b in range(B):
        rows = np.array([b], np.int32)
        alone_j = jax_search(rows, keys[b:b + 1], beam=beam, **opts, **sample)
        alone_n = numpy_search(rows, beam=beam, **opts, **sample, **({"seeds": seeds[b:b + 1]} if sample else {}))
        for together, alone in ((together_j, alone_j), (together_n, alone_n)):
            np.testing.assert_array_equal(np.asarray(together.tokens)[b], np.asarray(alone.tokens)[0])
            np.testing.assert_array_equal(np.asarray(together.scores)[b], np.asarray(alone.scores)[0])


def test_sampling_is_reproducible_from_the_seed_in_each():
    seeds = np.arange(B) + 7
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    other = jax.vmap(jax.random.key)(jnp.asarray(seeds + 1))
    sample = dict(temperature=2.0, top_k=5, top_p=0.95)
    a, b, c = (jax_search(ALL, k, **sample) for k in (keys, keys, other))
    np.testing.assert_array_equal(np.asarray(a.tokens), np.asarray(b.tokens))
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
    x, y, z = (numpy_search(ALL, seeds=s, **sample) for s in (seeds, seeds, seeds + 1))
    np.testing.assert_array_equal(x.tokens, y.tokens)
    assert not np.array_equal(x.tokens, z.tokens)
    for r in (a, x):  # the score is the model's log-prob of what was drawn, as greedy's
        assert np.all(np.isfinite(np.asarray(r.scores)))


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 0.5), (0.7, 4, 1.0), (1.3, 6, 0.8), (1.0, 0, 1.0)])
def test_both_sample_from_the_same_distribution(temperature, top_k, top_p):
    """On fixed steps (the table's rows), the two implementations keep the same support (top-k, nucleus) with the
    same probabilities, and the draws of each follow them."""
    logp = TABLE[:, 3, 5]  # [B, V]
    j = np.asarray(sampling.sampling_logits(jnp.asarray(logp), temperature, top_k, top_p))
    n = search_rules.sampling_logits(logp, temperature, top_k, top_p)
    keep = n > search_rules.NEG_INF / 2
    np.testing.assert_array_equal(j > search_rules.NEG_INF / 2, keep)
    np.testing.assert_allclose(jax.nn.softmax(j, axis=-1), jax.nn.softmax(n, axis=-1), atol=1e-6)
    if top_p < 1.0 or top_k:
        assert not keep.all()  # the cut removed something
    probs = np.exp(n - n.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    draws = 4000
    gens = search_rules.row_generators(np.arange(B))
    counts = np.zeros((B, V))
    for _ in range(draws // 10):
        for _ in range(10):
            counts[np.arange(B), search_rules.draw(n, gens)] += 1
    jax_draws = jax.vmap(lambda k: jax.vmap(jax.random.categorical)(jax.random.split(k, B), jnp.asarray(j)))(
        jax.random.split(jax.random.key(1), draws))
    jax_counts = np.stack([np.bincount(np.asarray(jax_draws)[:, b], minlength=V) for b in range(B)])
    for c in (counts, jax_counts):
        assert np.all(c[~keep] == 0)
        np.testing.assert_allclose(c / draws, probs, atol=0.04)


def test_bad_options_are_refused():
    for kwargs, match in ((dict(top_p=0.0), "top_p"), (dict(no_repeat_ngram=-1), "no_repeat_ngram"),
                          (dict(prefix=jnp.zeros((B, 1), jnp.int32)), "go together")):
        with pytest.raises(ValueError, match=match):
            search(jax_step, jnp.arange(B), (jnp.zeros(B, jnp.int32),) * 2, batch=B, max_len=L, bos_id=BOS,
                   eos_id=EOS, pad_id=PAD, **kwargs)
    for rules, match in ((np_search.Rules(top_p=1.5), "top_p"), (np_search.Rules(temperature=1.0), "one seed"),
                         (np_search.Rules(temperature=1.0), "one hypothesis")):
        with pytest.raises(ValueError, match=match):
            np_search.search(np_step, [ALL], [np.zeros(B, np.int32)] * 2, batch=B, max_len=L, bos_id=BOS,
                             eos_id=EOS, pad_id=PAD, beam=2 if match == "one hypothesis" else 1, rules=rules)
