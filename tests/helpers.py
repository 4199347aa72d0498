"""Test-facing names for the shared contract checks (one code path with `s2s-jax parity`), and small input
makers the test files share."""

from __future__ import annotations

import numpy as np

from s2s_jax.checks import (  # noqa: F401
    GRAD_RTOL,
    LOGIT_ATOL,
    check_padding_invariant,
    check_shared_encoder_step,
    check_step_equals_full,
    init_params,
    logits_of,
    random_batch,
)
from s2s_jax.checks import logits_of as flax_logits  # noqa: F401
from s2s_jax.config import ModelConfig
from tests.tensorboard_curve import tensorboard_curve  # noqa: F401
from torch_ref.parity import check_parity, check_torch_step_equals_full, torch_logits  # noqa: F401


def search_beams(cfg, params, batch, *, max_len: int, beam: int = 3, alpha: float = 0.6, shrink_rows: int = 0):
    """Encode `batch` and beam-search it with the config's special ids (for comparing search variants; the
    family's hooks are read from its record at each call, so a test may patch the record)."""
    from s2s_jax import build_model
    from s2s_jax.decoding.search import decode_source

    return decode_source(build_model(cfg), params, batch["src"], batch["src_lengths"], beam=beam, max_len=max_len,
                         alpha=alpha, shrink_rows=shrink_rows)


def random_src(cfg: ModelConfig, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids [batch, length] without specials, the first row full length, the others ragged."""
    rng = np.random.default_rng(seed)
    pool = np.array([i for i in range(cfg.src_vocab_size) if i not in {cfg.pad_id, cfg.bos_id, cfg.eos_id}])
    lengths = np.concatenate([[length], rng.integers(1, length + 1, batch - 1)]).astype(np.int32)
    src = rng.choice(pool, (batch, length)).astype(np.int32)
    src[np.arange(length)[None, :] >= lengths[:, None]] = cfg.pad_id
    return src, lengths

