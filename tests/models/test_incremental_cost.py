"""Incremental decoding costs one position per step, wherever the step is.

Counted with XLA's cost analysis (FLOPs of the compiled program), not timed:
- the decode state reached after 5 and after 40 steps has the same shapes and
  the compiled `decode_step` on each has the same FLOPs (within 1.5x), where
  re-running the teacher-forced pass on the prefix grows with its length;
- one step costs about one position of the full pass (within 1.5x of
  FLOPs(decode over 40 positions) / 40): ConvS2S keeps only the last k-1 conv
  inputs per layer, the Transformer attends over a fixed-size KV cache.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from s2s_jax import build_model, presets
from tests.helpers import init_params, random_batch

TINY = dict(src_vocab_size=13, tgt_vocab_size=13, emb_dim=8, hid_dim=16, n_layers=2, n_heads=2, ff_dim=32,
            max_len=64, pad_id=1, bos_id=2, eos_id=0)
STEPS = 40


def flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


@pytest.mark.parametrize("name", ["convs2s", "transformer"])
def test_step_cost_is_flat(name):
    cfg = presets.get(name, **TINY)
    batch = random_batch(cfg, batch=2, src_len=6, tgt_len=STEPS)
    model, v = build_model(cfg), {"params": init_params(cfg, batch)}
    enc = model.apply(v, batch["src"], batch["src_lengths"], method="encode")
    # the Transformer's cache is sized for the decode length, as a decoding loop would size it
    size = (STEPS,) if cfg.family == "transformer" else ()
    state = model.apply(v, enc, *size, method="init_decode_state")

    def step(e, tok, s):
        return model.apply(v, e, tok, s, method="decode_step")

    def decode(e, tgt):
        return model.apply(v, e, tgt, method="decode")

    jitted, reached = jax.jit(step), {}
    for t in range(STEPS):
        if t in (5, STEPS - 1):
            reached[t] = state
        _, state = jitted(enc, batch["tgt_in"][:, t], state)
    early, late = reached[5], reached[STEPS - 1]
    assert [x.shape for x in jax.tree.leaves(early)] == [x.shape for x in jax.tree.leaves(late)]

    token = batch["tgt_in"][:, 0]
    f_early, f_late = flops(step, enc, token, early), flops(step, enc, token, late)
    full_short, full_long = flops(decode, enc, batch["tgt_in"][:, :5]), flops(decode, enc, batch["tgt_in"])
    per_position = full_long / STEPS
    print(f"{name}: step FLOPs at 5 {f_early:.0f}, at {STEPS - 1} {f_late:.0f}; "
          f"full pass 5 positions {full_short:.0f}, {STEPS} positions {full_long:.0f}")
    assert max(f_early, f_late) <= 1.5 * min(f_early, f_late)
    assert full_long >= 4 * full_short  # the measure sees length: recomputing the prefix is not flat
    assert np.isclose(f_late, per_position, rtol=0.5), (f_late, per_position)
