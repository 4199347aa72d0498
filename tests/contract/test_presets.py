"""The model contract, held for every preset (DESIGN.md, "Invariants every preset passes").

The cases are read from `presets.names()` when the tests are collected, so a new
preset (or a new family with its presets) is tested without touching this file.
Each preset runs at tiny sizes that keep what makes it itself: its family, cell,
attention kind, direction, origin layout, conv style, norms, positions, tied
embeddings, layer count (capped at 2), positional limit (capped at 64) and
emb_dim == hid_dim where the preset has it. Vocabularies differ between source and
target and the special ids are not 0, 1, 2 in the usual order (pad 1 also makes
ConvS2S's pad-valued causal padding differ from zeros). A few option variants no
preset sets (source reversal, Luong's other scores, zero fill) join the model
checks; only presets are exported.

One test function per invariant, so a failure names it:
- parity with the torch mirror: logits <= 1e-5 abs, gradients <= 1e-4 rel (torch_ref.parity.check_parity)
- step = full over 50 steps, in JAX and in the torch mirror (the ONNX step graph's source)
- padding invariance (wider batch, a longer row)
- shared-encoder step, for families whose record says `shared_encoder`
- the export round trip is in test_export.py (a file of its own, so the two halves run on separate workers)

Params are built once per case (`prepared`, shared with test_export.py).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest

from s2s_jax import presets
from s2s_jax.checks import (
    check_padding_invariant,
    check_shared_encoder_step,
    check_step_equals_full,
    init_params,
    random_batch,
)
from s2s_jax.config import ModelConfig
from s2s_jax.models import family, target_limit
from torch_ref.parity import check_parity, check_torch_step_equals_full

SIZES = dict(src_vocab_size=37, tgt_vocab_size=41, pad_id=1, bos_id=2, eos_id=0)
# Options no preset sets by default, checked like presets (model checks only, not exported).
VARIANTS = {
    "bentrevett-lstm+reverse_source": ("bentrevett-lstm", dict(reverse_source=True)),
    "luong+dot-gru": ("luong", dict(attention="dot", input_feeding=False, cell="gru", n_layers=1)),
    "luong+concat-gru": ("luong", dict(attention="concat", cell="gru")),
    "luong+no-input-feeding": ("luong", dict(input_feeding=False)),
    "bentrevett-convs2s+zero-fill": ("bentrevett-convs2s", dict(pad_fill="zero")),
    # the fairseq transformer layout `s2s-jax import fairseq` loads into the marian family
    "marian+fairseq-pre-ln": ("marian", dict(positions="fairseq", activation="relu", tie_embeddings=False,
                                             pre_ln=True)),
}
PRESETS = presets.names()
CASES = PRESETS + sorted(VARIANTS)
STEPS = 50  # step = full over this many target positions (KV caches and conv buffers fill up)
SHARED_BEAMS = (3, 4)


def tiny(name: str) -> ModelConfig:
    """Preset `name` at test sizes; a preset that fixes its vocabulary and special ids (addition-attn) keeps them."""
    cfg = presets.get(name)
    sizes = {} if "src_vocab_size" in presets.PRESETS[name] else SIZES
    return cfg.replace(
        **sizes, hid_dim=16, emb_dim=16 if cfg.emb_dim == cfg.hid_dim else 8, n_layers=min(cfg.n_layers, 2),
        n_heads=2, ff_dim=16, max_len=min(cfg.max_len, 64),
    )


@functools.cache
def prepared(case: str) -> tuple[ModelConfig, Any, dict[str, np.ndarray]]:
    """(cfg, params, batch): batch 4, ragged source lengths 7, 1, ... and 5 target positions."""
    name, extra = VARIANTS.get(case, (case, {}))
    cfg = tiny(name).replace(**extra)
    batch = random_batch(cfg, seed=1)
    return cfg, init_params(cfg, batch), batch


def long_batch(cfg: ModelConfig) -> dict[str, np.ndarray]:
    limit = target_limit(cfg)
    return random_batch(cfg, seed=1, src_len=7, tgt_len=min(STEPS, limit or STEPS))


# --- model checks (JAX and the torch mirror) ---------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_parity_with_torch_mirror(case):
    err, rel = check_parity(*prepared(case))
    print(f"{case}: logits max abs {err:.2e}, grads max rel {rel:.2e}")


@pytest.mark.parametrize("case", CASES)
def test_step_equals_full(case):
    cfg, params, _ = prepared(case)
    print(f"{case}: step vs full {check_step_equals_full(cfg, params, long_batch(cfg)):.2e}")


@pytest.mark.parametrize("case", CASES)
def test_torch_step_equals_full(case):
    cfg, params, _ = prepared(case)
    check_torch_step_equals_full(cfg, params, long_batch(cfg))


@pytest.mark.parametrize("case", CASES)
def test_padding_invariant(case):
    # tutorial-attn: src 7 + 3 padding columns = max_len 10. The origin writes encoder outputs
    # into zeros(max_len, H), so a row's outputs cannot depend on the batch width up to max_len.
    cfg, params, batch = prepared(case)
    assert batch["src"].shape[1] + 3 <= cfg.max_len
    print(f"{case}: padding {check_padding_invariant(cfg, params, batch):.2e}")


@pytest.mark.parametrize("case", [c for c in CASES if family(prepared(c)[0]).shared_encoder])
def test_shared_encoder_step(case):
    cfg, params, batch = prepared(case)
    for beam in SHARED_BEAMS:
        err = check_shared_encoder_step(cfg, params, batch, beam=beam)
        assert err < 1e-5, f"beam {beam}: shared encoder output changes the step by {err}"
