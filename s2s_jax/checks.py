"""Invariants every model family must satisfy, written once against the model contract.

Used by the test suite and by `s2s-jax parity`, so what users run is what CI runs.
- `check_step_equals_full`: `decode_step` T times == teacher-forced `decode`.
- `check_padding_invariant`: padding other rows (a longer batch) changes no row.
Inputs are random and padded, with ragged lengths that include 1.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.models import build_model, family

LOGIT_ATOL = 1e-5
GRAD_RTOL = 1e-4
FIRST_TOKEN = 3  # random ids start above pad/bos/eos of the usual 0..2 specials


def random_batch(cfg: ModelConfig, seed: int = 0, batch: int = 4, src_len: int = 7, tgt_len: int = 5,
                 src_lengths: list[int] | None = None) -> dict[str, np.ndarray]:
    """Padded int32 batch with ragged source lengths (default: the max, 1, then random)."""
    rng = np.random.default_rng(seed)
    if src_lengths is None:
        src_lengths = [src_len, 1] + list(rng.integers(1, src_len + 1, max(batch - 2, 0)))
    lengths = np.array(src_lengths[:batch], np.int32)
    specials = {cfg.pad_id, cfg.bos_id, cfg.eos_id}
    pool_src = np.array([i for i in range(cfg.src_vocab_size) if i not in specials])
    pool_tgt = np.array([i for i in range(cfg.tgt_vocab_size) if i not in specials])
    src = rng.choice(pool_src, (batch, src_len)).astype(np.int32)
    src[np.arange(src_len)[None, :] >= lengths[:, None]] = cfg.pad_id
    tgt = rng.choice(pool_tgt, (batch, tgt_len)).astype(np.int32)
    tgt[:, 0] = cfg.bos_id
    return {"src": src, "src_lengths": lengths, "tgt_in": tgt}


def init_params(cfg: ModelConfig, batch: dict[str, np.ndarray], seed: int = 0) -> Any:
    model = build_model(cfg)
    variables = model.init(jax.random.key(seed), batch["src"], batch["src_lengths"], batch["tgt_in"])
    return variables["params"]


def logits_of(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray]) -> np.ndarray:
    model = build_model(cfg)
    forward = jax.jit(lambda p, src, lengths, tgt: model.apply({"params": p}, src, lengths, tgt))
    return np.asarray(forward(params, batch["src"], batch["src_lengths"], batch["tgt_in"]))


def check_step_equals_full(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray]) -> float:
    """Assert decode_step run T times gives decode's logits; return the max abs difference."""
    model = build_model(cfg)
    v = {"params": params}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    full = model.apply(v, enc, batch["tgt_in"], method="decode")
    full = full[0] if isinstance(full, tuple) else full
    state = model.apply(v, enc, method="init_decode_state")
    step = jax.jit(lambda e, t, s: model.apply(v, e, t, s, method="decode_step"))
    steps = []
    for t in range(batch["tgt_in"].shape[1]):
        logits, state = step(enc, batch["tgt_in"][:, t], state)
        steps.append(logits)
    err = float(jnp.abs(jnp.stack(steps, axis=1) - full).max())
    assert err <= LOGIT_ATOL, f"decode_step differs from decode by {err}"
    return err


def check_padding_invariant(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray], extra: int = 3) -> float:
    """Assert that padding the batch by `extra` columns and adding a longer row changes no row's logits."""
    base = logits_of(cfg, params, batch)
    src = np.pad(batch["src"], ((0, 1), (0, extra)), constant_values=cfg.pad_id)
    longest = batch["src"].shape[1] + extra
    specials = {cfg.pad_id, cfg.bos_id, cfg.eos_id}
    pool = np.array([i for i in range(cfg.src_vocab_size) if i not in specials])
    src[-1] = np.random.default_rng(7).choice(pool, longest)
    lengths = np.append(batch["src_lengths"], longest).astype(np.int32)
    tgt = np.concatenate([batch["tgt_in"], batch["tgt_in"][:1]], axis=0)
    tgt = np.pad(tgt, ((0, 0), (0, extra)), constant_values=cfg.pad_id)
    padded = logits_of(cfg, params, {"src": src, "src_lengths": lengths, "tgt_in": tgt})
    t = batch["tgt_in"].shape[1]
    err = float(np.abs(padded[:-1, :t] - base).max())
    assert err <= LOGIT_ATOL, f"padding changed logits by {err}"
    return err


def check_shared_encoder_step(cfg: ModelConfig, params: Any, batch: dict[str, np.ndarray], beam: int = 4,
                              steps: int = 2) -> float:
    """A model whose family record says `shared_encoder` steps B * beam rows on the encoder output of its B
    sentences as on that output repeated per beam (what beam search would otherwise pass): max abs difference
    of the logits and next state over `steps` steps of random tokens (the state feeds the next step's logits)."""
    from s2s_jax.decoding.search import repeat_beams  # decoding builds on models; import late, as a leaf

    model, variables = build_model(cfg), {"params": params}
    assert family(cfg).shared_encoder, f"{cfg.family} does not share its encoder output"
    enc = model.apply(variables, batch["src"], batch["src_lengths"], method="encode")
    enc_k = repeat_beams(enc, beam)
    state = model.apply(variables, enc_k, max_decode_len=steps + 1, method="init_decode_state")
    rows = len(batch["src"]) * beam
    tokens = np.random.default_rng(0).integers(FIRST_TOKEN, cfg.tgt_vocab_size, (steps, rows))
    # jitted: one compile per encoder shape costs less than the op-by-op dispatch of a Transformer step
    step = jax.jit(lambda e, t, s: model.apply(variables, e, t, s, method="decode_step"))
    err = 0.0
    for token in jnp.asarray(tokens):
        shared, repeated = step(enc, token, state), step(enc_k, token, state)
        for a, b in zip(jax.tree.leaves(shared), jax.tree.leaves(repeated), strict=True):
            if a.size:  # state leaves may be 0 wide (attention's feed without input feeding)
                err = max(err, float(jnp.max(jnp.abs(a - b))))
        state = repeated[1]
    return err
