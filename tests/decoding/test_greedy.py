"""Greedy decoding (`search` at beam 1) through the model contract: consistent with teacher forcing, stops and
pads at eos."""

import functools

import jax
import numpy as np
import pytest

from s2s_jax import build_model, presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.decoding.greedy import make_greedy_decoder
from s2s_jax.decoding.search import decode_source
from s2s_jax.models.rnn import RNNSeq2Seq

MAX_LEN = 6
NO_EOS = -1  # an id no argmax can produce: decode all MAX_LEN steps
TINY = dict(src_vocab_size=14, tgt_vocab_size=14, emb_dim=8, hid_dim=8, n_heads=2, ff_dim=16, n_layers=1, max_len=16)
CFG = presets.get("addition-gru", **{**TINY, "pad_id": 0, "bos_id": 1, "eos_id": 2})


@functools.cache
def _setup(preset: str = "addition-gru"):
    cfg = CFG if preset == "addition-gru" else presets.get(preset, **TINY)
    batch = random_batch(cfg, seed=0, batch=6, src_len=7)
    params = init_params(cfg, batch, seed=0)
    model = build_model(cfg)
    def greedy(p, s, sl, eos):
        r = decode_source(model, p, s, sl, max_len=MAX_LEN, eos_id=eos)
        return r.tokens[:, 0], r.lengths[:, 0]

    decode = jax.jit(greedy, static_argnums=3)
    return model, params, batch, decode


@pytest.mark.parametrize("preset", ["addition-gru", "addition-attn", "convs2s", "transformer"])
def test_greedy_equals_argmax_of_teacher_forced_decode(preset):
    model, params, batch, decode = _setup(preset)
    tokens, lengths = decode(params, batch["src"], batch["src_lengths"], NO_EOS)
    tokens = np.asarray(tokens)
    np.testing.assert_array_equal(lengths, MAX_LEN)
    tgt_in = np.concatenate([np.full((len(tokens), 1), model.cfg.bos_id, np.int32), tokens[:, :-1]], axis=1)
    logits = model.apply({"params": params}, batch["src"], batch["src_lengths"], tgt_in)
    np.testing.assert_array_equal(np.argmax(np.asarray(logits), -1), tokens)
    assert len(np.unique(tokens)) > 1  # a degenerate constant output would make this test vacuous


def test_stops_at_eos_and_pads_after():
    model, params, batch, decode = _setup()
    free, _ = decode(params, batch["src"], batch["src_lengths"], NO_EOS)
    free = np.asarray(free)
    # Call a token the rows emit "eos": each row must stop at its first occurrence.
    eos = int(free[0, 1])
    tokens, lengths = decode(params, batch["src"], batch["src_lengths"], eos)
    tokens, lengths = np.asarray(tokens), np.asarray(lengths)
    assert lengths[0] <= 2
    for row_free, row, n in zip(free, tokens, lengths, strict=True):
        hits = np.flatnonzero(row_free == eos)
        expected = hits[0] + 1 if len(hits) else MAX_LEN
        assert n == expected
        np.testing.assert_array_equal(row[:n], row_free[:n])
        np.testing.assert_array_equal(row[n:], CFG.pad_id)


STEP_CALLS: list[int] = []


class CountingSteps(RNNSeq2Seq):
    """The RNN model, counting decode_step executions (from inside the compiled loop) in STEP_CALLS."""

    def decode_step(self, enc, token, state, *, train=False):
        jax.debug.callback(lambda: STEP_CALLS.append(1))
        return super().decode_step(enc, token, state, train=train)


def test_loop_ends_when_every_row_has_emitted_eos():
    _, params, batch, _ = _setup()
    model = CountingSteps(CFG)
    STEP_CALLS.clear()
    # A huge eos bias makes every row emit eos first: one step, then [eos, pad, pad, ...].
    biased = jax.tree.map(lambda x: x, params)
    biased["out"]["bias"] = biased["out"]["bias"].at[CFG.eos_id].set(100.0)
    tokens, lengths = make_greedy_decoder(model, MAX_LEN)(biased, batch["src"], batch["src_lengths"])
    jax.effects_barrier()
    assert len(STEP_CALLS) == 1
    np.testing.assert_array_equal(lengths, 1)
    np.testing.assert_array_equal(np.asarray(tokens)[:, 0], CFG.eos_id)
    np.testing.assert_array_equal(np.asarray(tokens)[:, 1:], CFG.pad_id)
    STEP_CALLS.clear()
    make_greedy_decoder(model, MAX_LEN)(params, batch["src"], batch["src_lengths"])
    jax.effects_barrier()
    assert len(STEP_CALLS) == MAX_LEN  # without eos: exactly max_len steps
