"""`reverse_source` in the attention family: the encoder reads each source backwards within its length
(Sutskever et al.), in Flax and in the torch mirror alike; the contract invariants still hold."""

import numpy as np
import pytest

from s2s_jax import ConfigError, presets
from s2s_jax.layers.rnn import reverse_within_lengths
from tests.helpers import (
    check_padding_invariant,
    check_parity,
    check_step_equals_full,
    init_params,
    logits_of,
    random_batch,
)

TINY = dict(emb_dim=8, hid_dim=8, src_vocab_size=13, tgt_vocab_size=11, pad_id=0, bos_id=1, eos_id=2)
CASES = {
    "addition-attn": presets.get("addition-attn", **TINY, reverse_source=True),
    "bentrevett-attention": presets.get("bentrevett-attention", **TINY, dropout=0.0, reverse_source=True),
    "luong": presets.get("luong", **TINY, dropout=0.0, reverse_source=True),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_reversed_source_contract_and_parity(name):
    cfg = CASES[name]
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=4)
    params = init_params(cfg, batch)
    check_parity(cfg, params, batch)
    check_step_equals_full(cfg, params, batch)
    check_padding_invariant(cfg, params, batch)


def test_reverse_source_is_the_plain_model_on_reversed_input():
    cfg = CASES["addition-attn"]
    plain = cfg.replace(reverse_source=False)
    batch = random_batch(cfg, batch=3, src_len=6, tgt_len=4)
    params = init_params(cfg, batch)  # the same parameters serve both: reversal has none
    flipped = dict(batch, src=np.asarray(reverse_within_lengths(batch["src"], batch["src_lengths"])))
    np.testing.assert_allclose(logits_of(cfg, params, batch), logits_of(plain, params, flipped), atol=1e-6)
    assert np.abs(logits_of(cfg, params, batch) - logits_of(plain, params, batch)).max() > 1e-4


@pytest.mark.parametrize("preset", ["bentrevett-convs2s", "transformer"])
def test_families_without_it_refuse_reverse_source(preset):
    with pytest.raises(ConfigError, match="reverse_source=True is implemented by the rnn and attention"):
        presets.get(preset, reverse_source=True)
