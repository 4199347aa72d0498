"""One search contract (DESIGN.md): `s2s_jax.decoding.search.search` (JAX) and `export.search.search` (numpy)
give the same tokens and the same scores for the same step function; beam 1 means greedy in both; greedy's
scores are the length-penalised log-probs beam search reports, never NaN.

The toy step is a lookup: the log-probs of a row are a fixed table's entry for (sentence, position, a hash of
the row's history), so the JAX and numpy steps return bit-identical log-probs and any difference between the
two searches is the searches' own. The history hash makes beam reordering matter; an eos bias growing with
the position ends hypotheses at varied lengths.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from export import search as np_search
from s2s_jax import build_model, presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.decoding import beam as jax_beam
from s2s_jax.decoding.search import decode_source, model_step, search

B, L, H, V = 6, 10, 16, 9  # sentences, max_len, history hashes, vocabulary
PAD, BOS, EOS = 0, 1, 2
RNG = np.random.default_rng(0)
_logits = 2.0 * RNG.normal(size=(B, L + 1, H, V)) + (0.8 * np.arange(L + 1) - 4.0)[None, :, None, None] * (
    np.arange(V) == EOS)
TABLE = (_logits - np.log(np.exp(_logits).sum(-1, keepdims=True))).astype(np.float32)  # log-softmax
LIMITS = np.array([3, 10, 5, 7, 2, 9], np.int32)


def np_step(enc, token, state):
    sentence, (h, pos) = enc[0], state
    h = (h * 7 + token.astype(np.int32)) % H
    return TABLE[sentence, np.minimum(pos, L), h], [h, pos + 1]


def jax_step(enc, token, state, shared=False):
    sentence, (h, pos) = enc, state
    if shared:  # B sentences for B * K rows, K consecutive rows a sentence
        sentence = jnp.repeat(sentence, token.shape[0] // sentence.shape[0])
    h = (h * 7 + token) % H
    return jnp.asarray(TABLE)[sentence, jnp.minimum(pos, L), h], (h, pos + 1)


def init_state():
    return np.zeros(B, np.int32), np.zeros(B, np.int32)


@functools.partial(jax.jit, static_argnames=("beam", "alpha", "limits", "shared", "max_len"))
def jax_search(beam, alpha, limits, shared=False, max_len=L):
    return search(functools.partial(jax_step, shared=shared), jnp.arange(B, dtype=jnp.int32), init_state(), batch=B,
                  beam=beam, max_len=max_len, bos_id=BOS, eos_id=EOS, pad_id=PAD, alpha=alpha,
                  row_max_len=jnp.asarray(LIMITS) if limits else None, shared_encoder=shared, shrink_rows=2)


def numpy_search(beam, alpha, limits, max_len=L):
    return np_search.search(np_step, [np.arange(B)], list(init_state()), batch=B, beam=beam, max_len=max_len,
                            bos_id=BOS, eos_id=EOS, pad_id=PAD, alpha=alpha, row_max_len=LIMITS if limits else None)


def path_log_prob(tokens, length, sentence):
    """The table's log-prob of one hypothesis through `length` tokens, summed in float32 as the searches sum."""
    h, total, token = 0, np.float32(0.0), BOS
    for pos in range(length):
        h = (h * 7 + token) % H
        token = int(tokens[pos])
        total = np.float32(total + TABLE[sentence, min(pos, L), h, token])
    return total


@pytest.mark.parametrize("limits", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
@pytest.mark.parametrize("beam", [1, 3, 5])
def test_jax_and_numpy_search_agree(beam, alpha, limits):
    j, n = jax_search(beam, alpha, limits), numpy_search(beam, alpha, limits)
    assert j.tokens.shape == n.tokens.shape == (B, beam, L)
    np.testing.assert_array_equal(np.asarray(j.tokens), n.tokens)
    np.testing.assert_array_equal(np.asarray(j.lengths), n.lengths)
    np.testing.assert_allclose(np.asarray(j.scores), n.scores, rtol=1e-6)
    assert np.all(np.isfinite(n.scores))
    if limits:
        assert np.all(n.lengths <= LIMITS[:, None])
    assert len(set(n.lengths[:, 0].tolist())) > 2  # hypotheses end at varied lengths: the test is not vacuous


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_scores_are_length_penalised_path_log_probs(alpha):
    """Greedy and beam report the same quantity: each hypothesis' summed log-probs over ((5 + len) / 6) ** alpha."""
    for beam in (1, 4):
        r = numpy_search(beam, alpha, limits=True)
        for b in range(B):
            for k in range(beam):
                logp = path_log_prob(r.tokens[b, k], r.lengths[b, k], b)
                np.testing.assert_allclose(r.scores[b, k], logp / ((5 + r.lengths[b, k]) / 6) ** alpha, rtol=1e-5)


def test_greedy_scores_are_finite_without_eos():
    """A row that never emits eos (max_len 2, nothing forced) has length max_len and a finite score in both."""
    j, n = jax_search(1, 0.0, False, max_len=2), numpy_search(1, 0.0, False, max_len=2)
    assert np.any(n.lengths == 2) and not np.any(n.tokens == EOS)
    for r in (j, n):
        assert np.all(np.isfinite(np.asarray(r.scores)))
    np.testing.assert_allclose(np.asarray(j.scores), n.scores, rtol=1e-6)


def test_beam_one_means_greedy_in_both():
    """`search` at beam 1 is the greedy loop; the beam algorithm at K = 1 gives the same tokens and scores (when
    every row ends with eos before max_len: the beam algorithm forces it there, greedy does not)."""
    j_greedy, n_greedy = jax_search(1, 0.0, True), numpy_search(1, 0.0, True)
    j_beam1 = jax.jit(lambda: jax_beam.beam_search(
        jax_step, jnp.arange(B, dtype=jnp.int32), init_state(), batch=B, beam=1, max_len=L, bos_id=BOS, eos_id=EOS,
        pad_id=PAD, row_max_len=jnp.asarray(LIMITS)))()
    n_beam1 = np_search._beam(np_search.top_of(np_step, EOS), [np.arange(B)], list(init_state()), batch=B, beam=1,
                              max_len=L, bos_id=BOS, eos_id=EOS, pad_id=PAD, alpha=0.0, limit=LIMITS,
                              reorder=np_search.take_rows, take=np_search.take_rows, rules=np_search.NO_RULES)
    for greedy, beam1 in ((j_greedy, j_beam1), (n_greedy, n_beam1)):
        np.testing.assert_array_equal(np.asarray(greedy.tokens), np.asarray(beam1.tokens))
        np.testing.assert_array_equal(np.asarray(greedy.lengths), np.asarray(beam1.lengths))
        np.testing.assert_array_equal(np.asarray(greedy.scores), np.asarray(beam1.scores))


def test_shared_encoder_changes_nothing():
    a, b = jax_search(3, 0.7, True), jax_search(3, 0.7, True, shared=True)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sampling_scores_are_model_log_probs():
    """Sampling's score is the untempered log-prob of what it drew, as greedy's is."""
    r = jax.jit(lambda key: search(jax_step, jnp.arange(B, dtype=jnp.int32), init_state(), batch=B, max_len=L,
                                   bos_id=BOS, eos_id=EOS, pad_id=PAD, temperature=2.0, key=key))(jax.random.key(3))
    tokens, lengths, scores = (np.asarray(x)[:, 0] for x in r[:3])
    for b in range(B):
        np.testing.assert_allclose(scores[b], path_log_prob(tokens[b], lengths[b], b), rtol=1e-6)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="one seed per sentence"):
        np_search.search(np_step, [np.arange(B)], list(init_state()), batch=B, max_len=L, bos_id=BOS, eos_id=EOS,
                         pad_id=PAD, rules=np_search.Rules(temperature=1.0))
    for kwargs, match in ((dict(beam=3, temperature=1.0), "one hypothesis"), (dict(beam=0), "beam=0")):
        with pytest.raises(ValueError, match=match):
            search(jax_step, jnp.arange(B), init_state(), batch=B, max_len=L, bos_id=BOS, eos_id=EOS, pad_id=PAD,
                   **kwargs)


SIZES = dict(src_vocab_size=13, tgt_vocab_size=11, pad_id=0, bos_id=1, eos_id=2)


@pytest.mark.parametrize("preset,sizes", [
    ("bentrevett-gru", dict(emb_dim=8, hid_dim=12)),
    ("transformer", dict(emb_dim=12, hid_dim=12, n_layers=1, n_heads=2, ff_dim=16, max_len=16)),
])
def test_random_models_give_the_same_tokens_in_both_searches(preset, sizes):
    """The numpy search over a model's jitted JAX step == the JAX search of that model (greedy and beam 4, with
    per-row bounds and a length penalty); ties aside, random models agree token for token."""
    cfg = presets.get(preset, **SIZES, **sizes)
    batch = random_batch(cfg, seed=2, batch=8, src_len=6, tgt_len=3)
    params = jax.tree.map(lambda x: 2.5 * x, init_params(cfg, batch))
    model = build_model(cfg)
    src, src_lengths, limits = batch["src"], batch["src_lengths"], batch["src_lengths"] + 2
    max_len = 9
    v = {"params": params}
    enc = model.apply(v, src, src_lengths, method="encode")
    state = model.apply(v, enc, max_decode_len=max_len, method="init_decode_state")
    enc_leaves, enc_def = jax.tree.flatten(enc)
    state_leaves, state_def = jax.tree.flatten(state)
    jitted = jax.jit(model_step(model, params)["step"])

    def step(enc_arrays, token, state_arrays):
        logp, new = jitted(jax.tree.unflatten(enc_def, enc_arrays), jnp.asarray(token, jnp.int32),
                           jax.tree.unflatten(state_def, state_arrays))
        return np.asarray(logp), [np.asarray(x) for x in jax.tree.leaves(new)]

    ids = dict(bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id, max_len=max_len)
    run = jax.jit(lambda s, n, lim, beam, alpha: decode_source(model, params, s, n, beam=beam, alpha=alpha,
                                                               row_max_len=lim, **ids), static_argnums=(3, 4))
    for beam, alpha in ((1, 0.0), (4, 0.6)):
        j = run(src, src_lengths, limits, beam, alpha)
        n = np_search.search(step, [np.asarray(x) for x in enc_leaves], [np.asarray(x) for x in state_leaves],
                             batch=len(src), beam=beam, alpha=alpha, row_max_len=limits, **ids)
        np.testing.assert_array_equal(np.asarray(j.tokens), n.tokens)
        np.testing.assert_array_equal(np.asarray(j.lengths), n.lengths)
        np.testing.assert_allclose(np.asarray(j.scores), n.scores, rtol=1e-5, atol=1e-5)
        assert np.all(np.isfinite(n.scores))
