"""The RNN family beyond the model contract: source reversal and dropout wiring.

Parity with torch_ref, step == full (JAX and torch) and padding invariance of every preset (and of
bentrevett-lstm with reverse_source) are in tests/contract/test_presets.py.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import torch_ref
from s2s_jax import build_model, presets
from tests.helpers import LOGIT_ATOL, init_params, random_batch
from torch_ref.convert import flax_to_torch

TINY = dict(src_vocab_size=13, tgt_vocab_size=11, emb_dim=8, hid_dim=12)


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}


def test_reverse_source_changes_the_model():
    """reverse_source is wired: the same weights give different logits with and without it."""
    cfg = presets.get("bentrevett-lstm", **TINY, dropout=0.0, reverse_source=True)
    batch = random_batch(cfg)
    params = init_params(cfg, batch)
    model, plain = build_model(cfg), build_model(cfg.replace(reverse_source=False))
    a = model.apply({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    b = plain.apply({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"])
    assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) > 1e-4


# bentrevett-gru: embedding dropout only (1 layer); d2l: between layers only; lstm: both.
@pytest.mark.parametrize("name", ["bentrevett-lstm", "bentrevett-gru", "d2l-seq2seq"])
def test_dropout_is_wired(name):
    cfg = presets.get(name, **TINY, dropout=0.5)
    batch = random_batch(cfg)
    params = init_params(cfg, batch)
    model = build_model(cfg)

    def run(train, key=0):
        out = model.apply({"params": params}, batch["src"], batch["src_lengths"], batch["tgt_in"], train=train,
                          rngs={"dropout": jax.random.key(key)})
        return np.asarray(out)

    evals = run(False), run(False, 1)
    np.testing.assert_array_equal(evals[0], evals[1])
    assert np.abs(run(True, 0) - evals[0]).max() > 1e-3
    assert np.abs(run(True, 0) - run(True, 1)).max() > 1e-3

    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    b = torch_batch(batch)
    torch.manual_seed(0)
    with torch.no_grad():
        tmodel.train()
        t_train = [tmodel(b["src"], b["src_lengths"], b["tgt_in"]).numpy() for _ in range(2)]
        tmodel.eval()
        t_eval = [tmodel(b["src"], b["src_lengths"], b["tgt_in"]).numpy() for _ in range(2)]
    np.testing.assert_array_equal(t_eval[0], t_eval[1])
    assert np.abs(t_eval[0] - evals[0]).max() <= LOGIT_ATOL
    assert np.abs(t_train[0] - t_eval[0]).max() > 1e-3
    assert np.abs(t_train[0] - t_train[1]).max() > 1e-3


def test_addition_gru_has_no_dropout_site():
    """Seed 002 has no dropout: one layer, no embedding dropout, so train mode changes nothing."""
    cfg = presets.get("addition-gru", **TINY, dropout=0.5)
    batch = random_batch(cfg)
    params = init_params(cfg, batch)
    model = build_model(cfg)
    args = (batch["src"], batch["src_lengths"], batch["tgt_in"])
    train = model.apply({"params": params}, *args, train=True, rngs={"dropout": jax.random.key(0)})
    np.testing.assert_array_equal(np.asarray(train), np.asarray(model.apply({"params": params}, *args)))
