"""Jitted JAX reference functions the ONNX export tests compare onnxruntime against."""

from __future__ import annotations

import functools
from typing import Any

import jax

from s2s_jax.config import ModelConfig
from s2s_jax.decoding.search import decode_source
from s2s_jax.models import build_model


@functools.cache
def jax_fns(cfg: ModelConfig, max_len: int) -> tuple[Any, Any, Any, Any]:
    """(encode -> (enc, state), step -> (log-probs, state), greedy(p, src, lengths), beam(p, src, lengths, beam,
    alpha)), the last two `SearchResult`s of `s2s_jax.decoding.search`, jitted and cached per config so each shape
    compiles once.

    The beam search here keeps its whole batch to the end (`shrink_rows=0`): one compiled loop instead of one per
    stage of a shrinking batch (1.7 s instead of 5.9 s for a 200-sentence Transformer search on CPU). The
    shrinking search gives the same results (tests/decoding/test_beam.py, and the shared-encoder tests of
    tests/models), so comparing ORT with this one checks the same tokens."""
    model = build_model(cfg)
    ids = dict(bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id)

    def encode(p, src, lengths):
        enc = model.apply({"params": p}, src, lengths, method="encode")
        return enc, model.apply({"params": p}, enc, method="init_decode_state")

    def step(p, enc, token, state):
        logits, state = model.apply({"params": p}, enc, token, state, method="decode_step")[:2]
        return jax.nn.log_softmax(logits), state

    @functools.partial(jax.jit, static_argnames=("beam", "alpha"))
    def beam(p, src, lengths, beam, alpha):
        return decode_source(model, p, src, lengths, beam=beam, max_len=max_len, alpha=alpha, shrink_rows=0, **ids)

    @jax.jit
    def greedy(p, src, lengths):  # beam 1: tokens [B, 1, L], lengths and scores [B, 1]
        return decode_source(model, p, src, lengths, max_len=max_len, **ids)

    return jax.jit(encode), jax.jit(step), greedy, beam
