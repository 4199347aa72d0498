"""Ensembles: several models decoded as one, their next-token distributions averaged at every step.

fairseq's `EnsembleModel` and OpenNMT's ensemble decoder average the members' probabilities
(log of the mean of exp(log-probs)), which is what `average_log_probs` does; the result is again
a log-softmax, so the ensemble is one more `search` step function (DESIGN.md, "one search
contract") and greedy, beam, sampling, n-gram blocking and prefixes work on it unchanged.
The members must share the target vocabulary and special ids (the caller checks; see
`run/translate.py`); their families, sizes and states may differ: the ensemble's encoder
output and state are tuples of the members', reordered member by member.
`export/runtime.py` averages the same way in numpy over several exports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.decoding.common import take_rows
from s2s_jax.decoding.search import model_step, search
from s2s_jax.models import check_decode_len


def average_log_probs(log_probs: jax.Array) -> jax.Array:
    """[M, N, V] members' log-probs -> [N, V] log of their mean probability: max + log(sum(exp(x - max))) - log M,
    in float32 (the numpy runtime computes the same expression)."""
    top = jnp.max(log_probs, axis=0)
    return top + jnp.log(jnp.sum(jnp.exp(log_probs - top), axis=0)) - jnp.float32(math.log(log_probs.shape[0]))


def ensemble_step(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`search`'s model arguments ({"step", "reorder", "shared_encoder"}, as `model_step` gives them) for the
    members together. The encoder output is shared by a sentence's beams only if every member's is."""
    members = list(members)

    def step(enc: tuple, token: jax.Array, state: tuple) -> tuple[jax.Array, tuple]:
        outs = [m["step"](e, token, s) for m, e, s in zip(members, enc, state, strict=True)]
        return average_log_probs(jnp.stack([o[0] for o in outs])), tuple(o[1] for o in outs)

    def reorder(state: tuple, rows: jax.Array) -> tuple:
        return tuple((m["reorder"] or take_rows)(s, rows) for m, s in zip(members, state, strict=True))

    return {"step": step, "reorder": reorder, "shared_encoder": all(m["shared_encoder"] for m in members)}


def decode_ensemble(models: Sequence[tuple[nn.Module, Any]], src: jax.Array, src_lengths: jax.Array, *,
                    max_len: int, **search_kwargs: Any) -> Any:
    """`decode_source` for several (model, params): each encodes `src` and starts its own state, and `search`
    runs over their averaged step. Special ids are the first model's. Call inside `jax.jit`."""
    encs, states, members = [], [], []
    for model, params in models:
        check_decode_len(model.cfg, max_len)
        v = {"params": params}
        enc = model.apply(v, src, src_lengths, method="encode")
        encs.append(enc)
        states.append(model.apply(v, enc, max_decode_len=max_len, method="init_decode_state"))
        members.append(model_step(model, params))
    cfg = models[0][0].cfg
    return search(enc=tuple(encs), state=tuple(states), batch=src.shape[0], max_len=max_len, bos_id=cfg.bos_id,
                  eos_id=cfg.eos_id, pad_id=cfg.pad_id, **ensemble_step(members), **search_kwargs)
