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
