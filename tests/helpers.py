"""Test-facing names for the shared contract checks (one code path with `s2s-jax parity`)."""

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
from torch_ref.parity import check_parity, check_torch_step_equals_full, torch_logits  # noqa: F401


def search_beams(cfg, params, batch, *, max_len: int, beam: int = 3, alpha: float = 0.6, shrink_rows: int = 0):
    """Encode `batch` and beam-search it with the config's special ids (for comparing search variants; the
    family's hooks are read from its record at each call, so a test may patch the record)."""
    from s2s_jax import build_model
    from s2s_jax.decoding.search import decode_source

    return decode_source(build_model(cfg), params, batch["src"], batch["src_lengths"], beam=beam, max_len=max_len,
                         alpha=alpha, shrink_rows=shrink_rows)
