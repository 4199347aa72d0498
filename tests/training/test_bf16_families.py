"""bf16 training for every family (`--precision bf16`: bfloat16 compute, float32 params, optimizer state and loss):
on a fixed batch, 30 Adam steps lower the loss without NaN, and the bf16 loss stays within a stated tolerance of
the fp32 run's at every 10th step (5% of the starting loss)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import build_model, presets
from s2s_jax.data.batching import pad_batch
from s2s_jax.run.config import OptimizerConfig
from s2s_jax.training.schedules import make_optimizer_from
from s2s_jax.training.state import create_train_state
from s2s_jax.training.steps import make_train_step

# one preset per family, at toy widths; bf16 keeps ~3 significant digits, so the losses of the two runs drift
# apart by the accumulated rounding of 30 updates: the stated tolerance is 5% of the starting loss (log V)
FAMILIES = {
    "bentrevett-lstm": {}, "bentrevett-gru": {}, "bentrevett-attention": {},
    "bentrevett-convs2s": {"n_layers": 2}, "bentrevett-transformer": {"n_heads": 2, "ff_dim": 32, "n_layers": 2},
    "marian": {"n_heads": 2, "ff_dim": 32, "n_layers": 2, "max_len": 32},
}
TOLERANCE = 0.05
STEPS = 30


def _losses(cfg, batch, dtype):
    tx, _ = make_optimizer_from(OptimizerConfig(lr=1e-2, schedule="constant"), STEPS)
    model = build_model(cfg)
    state = create_train_state(model, cfg, tx, 0, batch)
    step = make_train_step(model, tx, compute_dtype=dtype)
    out = []
    for _ in range(STEPS):
        state, metrics = step(state, batch)
        out.append(float(metrics["loss"]))
    leaves = jax.tree.leaves((state.params, state.opt_state))
    assert all(x.dtype == jnp.float32 for x in leaves if hasattr(x, "dtype") and x.ndim)
    return np.array(out)


@pytest.mark.parametrize("preset", sorted(FAMILIES))
def test_bf16_trains_like_fp32(preset):
    cfg = presets.get(preset, src_vocab_size=23, tgt_vocab_size=19, emb_dim=16, hid_dim=16, dropout=0.0,
                      **FAMILIES[preset])
    rng = np.random.default_rng(0)
    rows = [(rng.integers(3, 23, int(rng.integers(1, 9))), rng.integers(3, 19, int(rng.integers(1, 8))))
            for _ in range(8)]
    batch = pad_batch([s for s, _ in rows], [t for _, t in rows], 9, pad_id=cfg.pad_id, bos_id=cfg.bos_id,
                      eos_id=cfg.eos_id)
    fp32, bf16 = _losses(cfg, batch, None), _losses(cfg, batch, jnp.bfloat16)
    assert np.all(np.isfinite(bf16)) and bf16[-1] < 0.8 * bf16[0], bf16  # it learns the batch
    assert not np.array_equal(bf16, fp32)  # bf16 really computed
    gap = np.abs(bf16 - fp32)[::10] / fp32[0]
    assert gap.max() <= TOLERANCE, (preset, gap, fp32[::10], bf16[::10])
