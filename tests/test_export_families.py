"""ONNX export of the attention, convs2s and transformer families through the same generic path as rnn.

One tiny preset per distinct feature (bi-GRU encoder with lengths, location
attention over max_len, Luong input feeding with LSTM, fconv buffers, KV-cached
pre-LN Transformer), exported once each, no task (ids only): onnxruntime
step log-probs match JAX at sizes other than the export sample, and greedy and
beam tokens are identical to s2s_jax.decoding. The model limits the graph
cannot enforce itself (source length, decode steps) are in model.json and
enforced by the runtime.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest

from export.onnx_export import export_model
from export.runtime import TranslationError, Translator
from s2s_jax import presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.config import ModelConfig
from tests.jax_reference import jax_fns as reference_fns

SIZES = dict(src_vocab_size=13, tgt_vocab_size=13, pad_id=0, bos_id=1, eos_id=2)
CASES = {
    "bentrevett-attention": dict(emb_dim=8, hid_dim=12),
    "d2l-bahdanau": dict(emb_dim=8, hid_dim=12),
    "tutorial-attn": dict(emb_dim=12, hid_dim=12, max_len=10),
    "addition-attn": dict(emb_dim=12, hid_dim=12),
    "luong": dict(emb_dim=8, hid_dim=12),
    "bentrevett-convs2s": dict(emb_dim=8, hid_dim=12, n_layers=2, max_len=64),
    "convs2s": dict(emb_dim=8, hid_dim=12, n_layers=2, max_len=64),
    "bentrevett-transformer": dict(emb_dim=12, hid_dim=12, n_layers=2, n_heads=2, ff_dim=16, max_len=64),
    "transformer": dict(emb_dim=12, hid_dim=12, n_layers=2, n_heads=2, ff_dim=16, max_len=16),
}
N_INPUTS = 200  # sentences whose greedy and beam-5 tokens must be identical in JAX and ORT
MAX_LEN = 8
ATOL = 1e-4


class Exported(NamedTuple):
    cfg: ModelConfig
    params: Any
    manifest: dict[str, Any]
    translator: Translator


@pytest.fixture(scope="module", params=sorted(CASES))
def exported(request, tmp_path_factory) -> Exported:
    cfg = presets.get(request.param, **SIZES, **CASES[request.param])
    params = init_params(cfg, random_batch(cfg, batch=2, src_len=5, tgt_len=3))
    out = tmp_path_factory.mktemp(request.param)
    manifest = export_model(cfg, params, out, preset=request.param)
    return Exported(cfg, params, manifest, Translator.load(out))


def jax_fns(cfg: ModelConfig):
    return reference_fns(cfg, MAX_LEN)


def random_src(cfg: ModelConfig, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = np.concatenate([[length], rng.integers(1, length + 1, batch - 1)]).astype(np.int32)
    src = rng.integers(3, cfg.src_vocab_size, (batch, length)).astype(np.int32)
    src[np.arange(length)[None, :] >= lengths[:, None]] = cfg.pad_id
    return src, lengths


def test_export_checked_against_torch(exported):
    assert exported.manifest["check"]["max_abs_logprob_error"] <= ATOL


@pytest.mark.parametrize("batch,length", [(1, 1), (3, 7), (1, 50), (3, 50)])
def test_step_log_probs_match_jax(exported, batch, length):
    limit = exported.manifest["max_src_len"]
    if limit is not None and length > limit:
        length = limit  # tutorial-attn scores a fixed max_len positions; longer sources are refused
    encode, step = jax_fns(exported.cfg)[:2]
    src, lengths = random_src(exported.cfg, batch, length, seed=batch * length)
    enc_j, state_j = encode(exported.params, src, lengths)
    enc_o, state_o = exported.translator.encode(src, lengths)
    tokens = np.random.default_rng(length).integers(0, exported.cfg.tgt_vocab_size, (4, batch))
    tokens[0] = exported.cfg.bos_id
    worst = 0.0
    for token in tokens:
        logp_j, state_j = step(exported.params, enc_j, token.astype(np.int32), state_j)
        logp_o, state_o = exported.translator.step(enc_o, token, state_o)
        worst = max(worst, float(np.abs(logp_o - np.asarray(logp_j)).max()))
    assert worst <= ATOL


def test_greedy_tokens_identical(exported):
    src, lengths = random_src(exported.cfg, N_INPUTS, 9, seed=3)
    tokens_j, lengths_j = jax_fns(exported.cfg)[2](exported.params, src, lengths)
    greedy_o = exported.translator.search(src, lengths, max_len=MAX_LEN)
    np.testing.assert_array_equal(greedy_o.tokens[:, 0], np.asarray(tokens_j))
    np.testing.assert_array_equal(greedy_o.lengths[:, 0], np.asarray(lengths_j))


def test_beam_tokens_identical(exported):
    src, lengths = random_src(exported.cfg, N_INPUTS, 9, seed=3)
    beam_j = jax_fns(exported.cfg)[3](exported.params, src, lengths, 5, 0.6)
    beam_o = exported.translator.search(src, lengths, beam=5, max_len=MAX_LEN, alpha=0.6)
    np.testing.assert_array_equal(beam_o.tokens, np.asarray(beam_j.tokens))
    np.testing.assert_array_equal(beam_o.lengths, np.asarray(beam_j.lengths))
    np.testing.assert_allclose(beam_o.scores, np.asarray(beam_j.scores), atol=ATOL)


def test_limits_recorded_and_enforced(exported):
    cfg, m = exported.cfg, exported.manifest
    positional = cfg.family in ("convs2s",) or cfg.attention == "location" or (
        cfg.family == "transformer" and cfg.positions == "learned")
    assert m["max_src_len"] == (cfg.max_len if positional else None)
    assert m["max_decode_steps"] == (cfg.max_len if cfg.family in ("convs2s", "transformer") else None)
    if m["max_src_len"] is not None:
        with pytest.raises(TranslationError, match="exceeds this model's limit"):
            exported.translator.search(*random_src(cfg, 1, cfg.max_len + 1, seed=0), max_len=2)
    if m["max_decode_steps"] is not None:
        with pytest.raises(TranslationError, match="max_decode_steps"):
            exported.translator.search(*random_src(cfg, 1, 3, seed=0), max_len=cfg.max_len + 1)
