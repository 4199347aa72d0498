"""Jitted JAX reference functions the ONNX export tests compare onnxruntime against."""

from __future__ import annotations

import functools
from typing import Any

import jax

from s2s_jax.config import ModelConfig
from s2s_jax.decoding.beam import beam_search
from s2s_jax.decoding.greedy import greedy_decode
from s2s_jax.models import build_model


@functools.cache
def jax_fns(cfg: ModelConfig, max_len: int) -> tuple[Any, Any, Any, Any]:
    """(encode -> (enc, state), step -> (log-probs, state), greedy, beam(p, src, lengths, beam, alpha)),
    jitted and cached per config so each shape compiles once."""
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
        enc = model.apply({"params": p}, src, lengths, method="encode")
        return beam_search(model, p, enc, beam=beam, max_len=max_len, alpha=alpha, **ids)

    greedy = jax.jit(lambda p, src, lengths: greedy_decode(model, p, src, lengths, max_len=max_len, **ids))
    return jax.jit(encode), jax.jit(step), greedy, beam
