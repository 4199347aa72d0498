"""Beam search (`search` with beam > 1): the algorithm at beam 1 is greedy, batch-independent, n-best ordered,
never worse than greedy."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import build_model, presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.decoding.beam import beam_search
from s2s_jax.decoding.search import decode_source, length_penalty, model_step, repeat_beams, stage_batches

MAX_LEN = 14


class ToyMarkov(nn.Module):
    """A contract-complete toy model: logits from (previous token, source), eos likelier each step.

    Random RNNs end at once or never; this one ends at varied lengths, which is what the
    beam-search properties need. `decode` is the teacher-forced twin of `decode_step`.
    """

    cfg: Any

    def setup(self) -> None:
        v = self.cfg.tgt_vocab_size
        self.table = self.param("table", nn.initializers.normal(2.0), (v, v))
        self.src_embed = nn.Embed(self.cfg.src_vocab_size, v)

    def encode(self, src, src_lengths, *, train=False):
        mask = jnp.arange(src.shape[1])[None, :] < src_lengths[:, None]
        return jnp.sum(jnp.where(mask[..., None], self.src_embed(src), 0.0), axis=1) / src_lengths[:, None]

    def init_decode_state(self, enc, max_decode_len=None):
        return jnp.zeros(enc.shape[:1], jnp.float32)

    def _logits(self, enc, token, step):
        eos = jax.nn.one_hot(self.cfg.eos_id, self.cfg.tgt_vocab_size)
        return self.table[token] + enc + (0.8 * step - 3.0)[..., None] * eos

    def decode_step(self, enc, token, state, *, train=False):
        return self._logits(enc, token, state), state + 1.0

    def decode(self, enc, tgt_in, *, train=False):
        steps = jnp.broadcast_to(jnp.arange(tgt_in.shape[1], dtype=jnp.float32), tgt_in.shape)
        return self._logits(enc[:, None, :], tgt_in, steps)

    def __call__(self, src, src_lengths, tgt_in, *, train=False):
        return self.decode(self.encode(src, src_lengths), tgt_in)


@pytest.fixture(scope="module")
def setup():
    cfg = presets.get("addition-gru", src_vocab_size=13, tgt_vocab_size=9, pad_id=0, bos_id=1, eos_id=2)
    batch = random_batch(cfg, seed=3, batch=8, src_len=7)
    model = ToyMarkov(cfg)
    params = model.init(jax.random.key(1), batch["src"], batch["src_lengths"], batch["tgt_in"])["params"]

    @functools.partial(jax.jit, static_argnames=("beam", "alpha"))
    def beam(params, src, src_lengths, beam, alpha=0.0):
        return decode_source(model, params, src, src_lengths, beam=beam, max_len=MAX_LEN, alpha=alpha)

    return cfg, model, params, batch, beam


def sequence_logp(model, params, batch, tokens, lengths, cfg):
    """Model log-prob of each row's `tokens[:length]` under teacher forcing."""
    tgt_in = jnp.concatenate([jnp.full((tokens.shape[0], 1), cfg.bos_id), tokens[:, :-1]], axis=1)
    logits = model.apply({"params": params}, batch["src"], batch["src_lengths"], tgt_in)
    logp = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(logp, tokens[:, :, None], axis=2)[..., 0]
    mask = jnp.arange(tokens.shape[1])[None, :] < lengths[:, None]
    return np.asarray(jnp.sum(jnp.where(mask, picked, 0.0), axis=1))


def test_beam_one_equals_greedy(setup):
    """The beam algorithm at K = 1 gives greedy's tokens and scores (so `search` may run greedy for beam 1)."""
    cfg, model, params, batch, beam = setup
    greedy = beam(params, batch["src"], batch["src_lengths"], beam=1)  # search's beam 1: the greedy loop
    g_lengths = np.asarray(greedy.lengths[:, 0])
    assert np.all(g_lengths < MAX_LEN), "the test model should end every greedy row with eos"
    assert len(set(g_lengths.tolist())) > 1, "the test needs rows of different lengths"

    @jax.jit
    def beam_algorithm_at_one(params, src, src_lengths):
        v = {"params": params}
        enc = model.apply(v, src, src_lengths, method="encode")
        state = model.apply(v, enc, max_decode_len=MAX_LEN, method="init_decode_state")
        return beam_search(enc=enc, state=state, batch=src.shape[0], beam=1, max_len=MAX_LEN, bos_id=cfg.bos_id,
                           eos_id=cfg.eos_id, pad_id=cfg.pad_id, **model_step(model, params))

    r = beam_algorithm_at_one(params, batch["src"], batch["src_lengths"])
    np.testing.assert_array_equal(np.asarray(r.tokens[:, 0]), np.asarray(greedy.tokens[:, 0]))
    np.testing.assert_array_equal(np.asarray(r.lengths[:, 0]), g_lengths)
    np.testing.assert_allclose(np.asarray(r.scores), np.asarray(greedy.scores), rtol=1e-6)


def test_scores_are_model_log_probs_and_nbest_is_sorted(setup):
    cfg, model, params, batch, beam = setup
    r = beam(params, batch["src"], batch["src_lengths"], beam=4, alpha=0.6)
    scores = np.asarray(r.scores)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    for k in range(4):
        logp = sequence_logp(model, params, batch, r.tokens[:, k], r.lengths[:, k], cfg)
        expected = logp / np.asarray(length_penalty(r.lengths[:, k].astype(jnp.float32), 0.6))
        np.testing.assert_allclose(scores[:, k], expected, rtol=1e-4, atol=1e-4)
    ends = np.take_along_axis(np.asarray(r.tokens), np.asarray(r.lengths)[:, :, None] - 1, axis=2)
    assert np.all(ends == cfg.eos_id)


def test_beam_five_never_worse_than_greedy(setup):
    cfg, model, params, batch, beam = setup
    r1 = beam(params, batch["src"], batch["src_lengths"], beam=1, alpha=0.6)
    r5 = beam(params, batch["src"], batch["src_lengths"], beam=5, alpha=0.6)
    assert np.all(np.asarray(r5.scores[:, 0]) >= np.asarray(r1.scores[:, 0]) - 1e-6)


def test_sentence_result_does_not_depend_on_batch(setup):
    cfg, model, params, batch, beam = setup
    full = beam(params, batch["src"], batch["src_lengths"], beam=3)
    order = np.array([4, 1, 5])  # a different batch: other neighbours, other size, other order
    sub = {k: v[order] for k, v in batch.items()}
    part = beam(params, sub["src"], sub["src_lengths"], beam=3)
    np.testing.assert_array_equal(np.asarray(part.tokens), np.asarray(full.tokens)[order])
    np.testing.assert_allclose(np.asarray(part.scores), np.asarray(full.scores)[order], rtol=1e-6)


def test_stage_batches_halve_down_to_shrink_rows():
    assert stage_batches(64, 8) == [64, 32, 16, 8]
    assert stage_batches(50, 8) == [50, 25, 13]
    assert stage_batches(7, 8) == [7]
    assert stage_batches(64, 0) == [64]
    assert stage_batches(3, 1) == [3, 2, 1]


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_dropping_finished_sentences_changes_nothing(setup, alpha):
    """Batch 8 searched in stages of 8, 4, 2 and 1 sentences gives what the whole batch to the end gives."""
    cfg, model, params, batch, _ = setup
    limit = jnp.asarray(batch["src_lengths"]) + 3

    def search(shrink_rows):
        return decode_source(model, params, batch["src"], batch["src_lengths"], beam=3, max_len=MAX_LEN, alpha=alpha,
                             row_max_len=limit, shrink_rows=shrink_rows)

    whole, staged = search(0), search(1)
    assert len(set(np.asarray(whole.lengths).max(axis=1).tolist())) > 2  # sentences finish at different steps
    for a, b in zip(whole, staged, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_row_max_len_forces_eos(setup):
    cfg, model, params, batch, _ = setup
    limit = jnp.asarray(batch["src_lengths"]) + 1
    r = decode_source(model, params, batch["src"], batch["src_lengths"], beam=2, max_len=MAX_LEN, row_max_len=limit)
    assert np.all(np.asarray(r.lengths) <= np.asarray(limit)[:, None])


def test_repeat_beams_keeps_rows_together():
    x = jnp.arange(6).reshape(3, 2)
    np.testing.assert_array_equal(repeat_beams(x, 2)[:, 0], [0, 0, 2, 2, 4, 4])


def test_real_model_rows_do_not_depend_on_batch():
    """The same property on a real LSTM seq2seq (hypotheses run to max_len there)."""
    cfg = presets.get("bentrevett-lstm", src_vocab_size=13, tgt_vocab_size=9, emb_dim=8, hid_dim=16, dropout=0.0)
    batch = random_batch(cfg, seed=3, batch=5, src_len=7)
    params = init_params(cfg, batch, seed=1)
    model = build_model(cfg)

    @jax.jit
    def run(src, src_lengths):
        return decode_source(model, params, src, src_lengths, beam=3, max_len=6)

    full = run(batch["src"], batch["src_lengths"])
    for i in range(5):
        one = run(batch["src"][i : i + 1], batch["src_lengths"][i : i + 1])
        np.testing.assert_array_equal(np.asarray(one.tokens[0]), np.asarray(full.tokens[i]))


def test_zero_width_state_tensors_are_gathered():
    """A state with a 0-size axis (attention `feed` without input feeding) survives beam reordering."""
    cfg = presets.get("bentrevett-attention", src_vocab_size=13, tgt_vocab_size=9, emb_dim=8, hid_dim=8, dropout=0.0)
    batch = random_batch(cfg, seed=3, batch=3, src_len=5)
    params = init_params(cfg, batch, seed=1)
    model = build_model(cfg)
    r = decode_source(model, params, batch["src"], batch["src_lengths"], beam=3, max_len=4)
    assert r.tokens.shape == (3, 3, 4)
