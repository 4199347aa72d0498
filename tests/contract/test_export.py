"""The export round trip, held for every preset (DESIGN.md, "Invariants every preset passes"; the model checks
are in test_presets.py, whose tiny configs this file shares).

For each name in `presets.names()`: the exporter's own check against torch, ORT step log-probs within 1e-4 of
JAX's at sizes other than the export sample, the same through the path the search takes (state kept in
onnxruntime and beams reordered by state_reorder.onnx, or for the Transformers' cache state in numpy buffers
written in place; candidates from the search head), identical greedy and
beam-5 tokens (and scores) for 200 sentences of source lengths 1 to 50 (1, 7 and 50 among them) and again for
some of them decoded at batch 1 and 3, and the limits the graph cannot enforce recorded in model.json and
enforced by the runtime.

The exported weights are the contract's random params with the eos bias raised so that eos wins at about 15%
of the greedy path's steps (`export_params`): plain random weights give every sentence the same length, which
would let token and length identity hold by accident. (Scaling the weights up as well, as test_export_rnn does
for the RNNs, pushes the deep ConvS2S and Transformer logits to where float32 rounding alone exceeds 1e-4.) The
tied-embedding Transformer has no output bias and keeps its weights. Every preset is exported once per module.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from export.onnx_export import export_model
from export.runtime import TranslationError, Translator
from export.search import candidates, top_k
from s2s_jax.config import ModelConfig
from s2s_jax.decoding.search import decode_source
from s2s_jax.models import build_model, family, target_limit
from tests.contract.test_presets import PRESETS, prepared
from tests.helpers import random_src
from tests.jax_reference import jax_fns

ATOL = 1e-4  # ORT vs JAX log-probs and beam scores
N_INPUTS = 200  # sentences whose greedy and beam tokens must be identical in JAX and ORT
MAX_LEN = 8
BEAM, ALPHA = 5, 0.6
EOS_SHARE = 0.15
SOURCE_LENGTHS = (50, 7, 1)  # rows 0-2 of the token-identity inputs (capped at the model's source limit)
HEAD_K = 3  # candidates per row asked of the search head in the stateful-step check


class Exported(NamedTuple):
    cfg: ModelConfig
    params: Any
    manifest: dict[str, Any]
    translator: Translator
    varied: bool  # eos bias raised: outputs end at varied lengths


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> Exported, each preset exported on first use and kept for the module."""
    cache: dict[str, Exported] = {}

    def get(name: str) -> Exported:
        if name not in cache:
            cfg, params, _ = prepared(name)
            params, varied = export_params(cfg, params)
            out = tmp_path_factory.mktemp(name)
            manifest = export_model(cfg, params, out, preset=name)
            cache[name] = Exported(cfg, params, manifest, Translator.load(out), varied)
        return cache[name]

    return get


def export_params(cfg: ModelConfig, params: Any) -> tuple[Any, bool]:
    """(`params` with the output layer's eos bias raised by the 15% quantile of eos's margin below the best token
    along the greedy path of 64 random sources, whether there was such a bias to raise)."""
    flat = flatten_dict(params)
    bias = [k for k, v in flat.items() if k[-1] == "bias" and v.shape == (cfg.tgt_vocab_size,)]
    if not bias:
        return params, False
    src, lengths = random_src(cfg, 64, 9, seed=11)
    model = build_model(cfg)
    tokens = decode_source(model, params, src, lengths, max_len=MAX_LEN).tokens[:, 0]
    tgt_in = jnp.concatenate([jnp.full((len(src), 1), cfg.bos_id), tokens[:, :-1]], axis=1)
    logits = model.apply({"params": params}, src, lengths, tgt_in)
    logits = logits[0] if isinstance(logits, tuple) else logits
    margin = jnp.max(logits.at[..., cfg.eos_id].set(-jnp.inf), axis=-1) - logits[..., cfg.eos_id]
    (key,) = bias
    flat[key] = flat[key].at[cfg.eos_id].add(float(jnp.quantile(margin, EOS_SHARE)))
    return unflatten_dict(flat), True


def token_inputs(exp: Exported) -> tuple[np.ndarray, np.ndarray]:
    """N_INPUTS sources up to 50 tokens wide (the model's source limit if less), rows 0-2 of SOURCE_LENGTHS."""
    width = min(SOURCE_LENGTHS[0], exp.manifest["max_src_len"] or SOURCE_LENGTHS[0])
    src, lengths = random_src(exp.cfg, N_INPUTS, width, seed=3)
    for row, length in enumerate(SOURCE_LENGTHS):
        lengths[row] = min(length, width)
        src[row, lengths[row]:] = exp.cfg.pad_id
    return src, lengths


def searched(exp: Exported, src: np.ndarray, lengths: np.ndarray, beam: int) -> tuple[tuple, tuple]:
    """((tokens [B, K, L], lengths [B, K], scores [B, K]) from JAX, the same from ORT) as numpy; beam 1 is greedy
    (K = 1, alpha 0). The one place this file calls the search API (tests/jax_reference.py, Translator.search)."""
    fns = jax_fns(exp.cfg, MAX_LEN)
    if beam == 1:
        res_j = fns[2](exp.params, src, lengths)
        res_o = exp.translator.search(src, lengths, max_len=MAX_LEN)
    else:
        res_j = fns[3](exp.params, src, lengths, beam, ALPHA)
        res_o = exp.translator.search(src, lengths, beam=beam, max_len=MAX_LEN, alpha=ALPHA)
    as_numpy = lambda r: (np.asarray(r.tokens), np.asarray(r.lengths), np.asarray(r.scores))  # noqa: E731
    return as_numpy(res_j), as_numpy(res_o)


@pytest.mark.parametrize("name", PRESETS)
def test_export_checked_against_torch(exports, name):
    exp = exports(name)
    assert exp.manifest["check"]["max_abs_logprob_error"] <= ATOL
    if family(exp.cfg).cache_state:  # heads of 8 dimensions: the step's fused attention writes the buffers
        assert set(exp.manifest["cache"]["present"]) == set(exp.manifest["state_tensors"])


@pytest.mark.parametrize("name", PRESETS)
def test_export_step_log_probs_match_jax(exports, name):
    """Encoder + 4 steps of random tokens at batch 1 and 3, source lengths 1 to 50 (capped at max_src_len)."""
    exp = exports(name)
    encode, step = jax_fns(exp.cfg, MAX_LEN)[:2]
    limit = exp.manifest["max_src_len"]
    for batch, length in [(1, 1), (3, 7), (1, 50), (3, 50)]:
        length = min(length, limit or length)
        src, lengths = random_src(exp.cfg, batch, length, seed=batch * length)
        enc_j, state_j = encode(exp.params, src, lengths)
        enc_o, state_o = exp.translator.encode(src, lengths)
        tokens = np.random.default_rng(length).integers(0, exp.cfg.tgt_vocab_size, (4, batch))
        tokens[0] = exp.cfg.bos_id
        for t, token in enumerate(tokens):
            logp_j, state_j = step(exp.params, enc_j, token.astype(np.int32), state_j)
            logp_o, state_o = exp.translator.step(enc_o, token, state_o)
            assert logp_o.shape == (batch, exp.cfg.tgt_vocab_size)
            err = float(np.abs(logp_o - np.asarray(logp_j)).max())
            assert err <= ATOL, f"batch {batch}, source length {length}, step {t}: |ORT - JAX| log-prob {err}"


@pytest.mark.parametrize("name", PRESETS)
def test_export_stateful_step_matches_jax(exports, name):
    """The search's path through onnxruntime (OrtStepper: OrtValues fed back, state_reorder.onnx or the cache
    buffers, the search head) against JAX's step with the same row gathers, at batch 1 and 3, source lengths 1,
    7 and 50: the head's top candidates (eos forced on `last` rows, beam scores `live` added) and the whole
    candidate rows within 1e-4."""
    exp = exports(name)
    encode, step = jax_fns(exp.cfg, MAX_LEN)[:2]
    stepper, eos = exp.translator.stepper, exp.cfg.eos_id
    limit = exp.manifest["max_src_len"]
    for batch, length in [(1, 1), (3, 7), (3, 50)]:
        length = min(length, limit or length)
        src, lengths = random_src(exp.cfg, batch, length, seed=batch * length)
        enc_j, state_j = encode(exp.params, src, lengths)
        enc_o, state_o = stepper.encode(src, lengths)
        rng = np.random.default_rng(length)
        token = np.full(batch, exp.cfg.bos_id)
        for t in range(4):
            live = rng.normal(size=batch).astype(np.float32)
            last = rng.random(batch) < 0.5
            logp_j, state_j = step(exp.params, enc_j, token.astype(np.int32), state_j)
            cand_j = candidates(np.asarray(logp_j), live, last, eos)
            cand_o, _, _ = stepper.top_step(enc_o, token, state_o, live, last, None)
            values, ids, state_o = stepper.top_step(enc_o, token, state_o, live, last, HEAD_K)
            where = f"batch {batch}, source length {length}, step {t}"
            np.testing.assert_allclose(cand_o, cand_j, atol=ATOL, err_msg=where)
            np.testing.assert_allclose(values, top_k(cand_j, HEAD_K)[0], atol=ATOL, err_msg=where)
            np.testing.assert_allclose(np.take_along_axis(cand_j, ids, axis=1), values, atol=ATOL, err_msg=where)
            assert np.all(ids[last, 0] == eos), where  # the head forces eos where asked
            rows = rng.integers(0, batch, batch)  # a beam reorder: rows repeated and moved
            state_j = jax.tree.map(lambda x, r=rows: x[r], state_j)
            state_o = stepper.reorder(state_o, rows)
            token = rng.integers(0, exp.cfg.tgt_vocab_size, batch)


CACHE_PRESETS = [n for n in PRESETS if family(prepared(n)[0]).cache_state]


@pytest.mark.parametrize("name", CACHE_PRESETS)
def test_export_cache_buffers_grow_and_reorder(exports, name):
    """A cache state's buffers (export/cache.py) past two growths (capacity CHUNK, then 2 and 3 CHUNK) with rows
    repeated, moved and dropped every step: log-probs within 1e-4 of JAX's fixed cache, at batch 3, source 7."""
    from export.cache import CHUNK, Cache

    exp = exports(name)
    assert exp.manifest["cache"] and exp.manifest["state_reorder"] is None
    encode, step = jax_fns(exp.cfg, MAX_LEN)[:2]
    stepper = exp.translator.stepper
    src, lengths = random_src(exp.cfg, 3, 7, seed=5)
    enc_j, state_j = encode(exp.params, src, lengths)
    enc_o, state_o = stepper.encode(src, lengths)
    rng = np.random.default_rng(0)
    token = np.full(3, exp.cfg.bos_id)
    steps = 2 * CHUNK + 3
    for t in range(steps):
        logp_j, state_j = step(exp.params, enc_j, token.astype(np.int32), state_j)
        logp_o, _, state_o = stepper.top_step(enc_o, token, state_o, np.zeros(3, np.float32), np.zeros(3, bool), None)
        np.testing.assert_allclose(logp_o, np.asarray(logp_j), atol=ATOL, err_msg=f"step {t}")
        rows = rng.integers(0, 3, 3)
        state_j = jax.tree.map(lambda x, r=rows: x[r], state_j)
        enc_j = jax.tree.map(lambda x, r=rows: x[r], enc_j)
        state_o, enc_o = stepper.reorder(state_o, rows), stepper.take(enc_o, rows)
        token = rng.integers(0, exp.cfg.tgt_vocab_size, 3)
    assert isinstance(state_o, Cache) and state_o.length == steps and state_o.capacity == 3 * CHUNK


def test_export_ensembles_mix_cache_and_plain_states(exports):
    """A Transformer export (cache state, encoder rows once per sentence) in ensembles (export/ensemble.py): with
    itself it decodes what it decodes alone, and with a GRU export (its state in onnxruntime, encoder rows once
    per beam, so the ensemble takes them per beam) each sentence gets at batch 1 the tokens it gets at batch 3."""
    from export.ensemble import EnsembleStepper
    from export.search import search_top

    tr, gru = exports("transformer"), exports("bentrevett-gru")
    cfg = tr.cfg
    assert (cfg.tgt_vocab_size, cfg.bos_id, cfg.eos_id, cfg.pad_id) == (
        gru.cfg.tgt_vocab_size, gru.cfg.bos_id, gru.cfg.eos_id, gru.cfg.pad_id)

    def decode(members, src, lengths):
        st = EnsembleStepper(members, cfg.eos_id)
        enc, state = st.encode(src, lengths)
        return search_top(st.top_step, enc, state, batch=len(src), beam=BEAM, max_len=MAX_LEN, bos_id=cfg.bos_id,
                          eos_id=cfg.eos_id, pad_id=cfg.pad_id, alpha=ALPHA, reorder=st.reorder, take=st.take,
                          shared_encoder=st.shared_encoder)

    src, lengths = random_src(cfg, 3, 7, seed=3)
    alone = tr.translator.search(src, lengths, beam=BEAM, max_len=MAX_LEN, alpha=ALPHA)
    twice = decode([tr.translator.stepper] * 2, src, lengths)
    np.testing.assert_array_equal(twice.tokens, alone.tokens)
    np.testing.assert_allclose(twice.scores, alone.scores, atol=1e-5)
    assert EnsembleStepper([tr.translator.stepper, gru.translator.stepper], cfg.eos_id).shared_encoder is False
    mixed = decode([tr.translator.stepper, gru.translator.stepper], src, lengths)
    for row in range(3):
        one = decode([tr.translator.stepper, gru.translator.stepper], src[row:row + 1, : lengths[row]],
                     lengths[row:row + 1])
        np.testing.assert_array_equal(one.tokens, mixed.tokens[row:row + 1], err_msg=f"row {row}")


def check_small_batches(exp: Exported, src: np.ndarray, lengths: np.ndarray, beam: int,
                        tokens: np.ndarray) -> None:
    """Rows 0-2 (source lengths 50, 7, 1) decoded by ORT at batch 3 and each alone at its own width give the
    tokens they got among N_INPUTS."""
    kwargs = dict(beam=beam, max_len=MAX_LEN, alpha=ALPHA if beam > 1 else 0.0)
    three = exp.translator.search(src[:3], lengths[:3], **kwargs).tokens
    np.testing.assert_array_equal(three, tokens[:3])
    for row in range(3):
        alone = exp.translator.search(src[row:row + 1, : lengths[row]], lengths[row:row + 1], **kwargs).tokens
        np.testing.assert_array_equal(alone, tokens[row:row + 1], err_msg=f"row {row} alone")


@pytest.mark.parametrize("name", PRESETS)
def test_export_greedy_tokens_identical(exports, name):
    exp = exports(name)
    src, lengths = token_inputs(exp)
    (tokens_j, lengths_j, scores_j), (tokens_o, lengths_o, scores_o) = searched(exp, src, lengths, beam=1)
    np.testing.assert_array_equal(tokens_o, tokens_j)
    np.testing.assert_array_equal(lengths_o, lengths_j)
    if exp.varied:
        assert len(np.unique(lengths_j)) > 1, "the check needs outputs of different lengths"
    assert np.all(np.isfinite(scores_o))  # greedy's scores mean what beam search's do, in both searches
    np.testing.assert_allclose(scores_o, scores_j, atol=ATOL)
    check_small_batches(exp, src, lengths, 1, tokens_j)


@pytest.mark.parametrize("name", PRESETS)
def test_export_beam_tokens_identical(exports, name):
    exp = exports(name)
    src, lengths = token_inputs(exp)
    (tokens_j, lengths_j, scores_j), (tokens_o, lengths_o, scores_o) = searched(exp, src, lengths, beam=BEAM)
    np.testing.assert_array_equal(tokens_o, tokens_j)
    np.testing.assert_array_equal(lengths_o, lengths_j)
    np.testing.assert_allclose(scores_o, scores_j, atol=ATOL)
    check_small_batches(exp, src, lengths, BEAM, tokens_j)


@pytest.mark.parametrize("name", PRESETS)
def test_export_limits_recorded_and_enforced(exports, name):
    """Learned positions and location attention bound the source; a state of max_len positions bounds the steps
    (a cache state only by the positions the model has)."""
    exp = exports(name)
    cfg, m = exp.cfg, exp.manifest
    bounded_source = target_limit(cfg) is not None or (cfg.family == "attention" and cfg.attention == "location")
    assert m["max_src_len"] == (cfg.max_len if bounded_source else None)
    record = family(cfg)
    steps = target_limit(cfg) if record.cache_state else cfg.max_len if record.state_holds_max_len else None
    assert m["max_decode_steps"] == steps
    if m["max_src_len"] is not None:
        with pytest.raises(TranslationError, match="exceeds this model's limit"):
            exp.translator.search(*random_src(cfg, 1, cfg.max_len + 1, seed=0), max_len=2)
    if m["max_decode_steps"] is not None:
        with pytest.raises(TranslationError, match="max_decode_steps"):
            exp.translator.search(*random_src(cfg, 1, 3, seed=0), max_len=cfg.max_len + 1)
