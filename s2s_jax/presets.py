"""Named model configs (fairseq-style registry): a preset is a config plus a class.

Sizes are the origins' defaults; vocabulary sizes and special ids are filled in
from the data (`get(name, src_vocab_size=..., ...)`).
"""

from __future__ import annotations

from typing import Any

from s2s_jax.config import ConfigError, ModelConfig

PRESETS: dict[str, dict[str, Any]] = {
    # bentrevett/pytorch-seq2seq tutorial 1 (Sutskever et al. 2014).
    "bentrevett-lstm": dict(
        family="rnn", origin="bentrevett-lstm", cell="lstm", emb_dim=256, hid_dim=512,
        n_layers=2, dropout=0.5, context="none", param_init="uniform:0.08",
    ),
    # bentrevett/pytorch-seq2seq tutorial 2 (Cho et al. 2014).
    "bentrevett-gru": dict(
        family="rnn", origin="bentrevett-gru", cell="gru", emb_dim=256, hid_dim=512,
        n_layers=1, dropout=0.5, context="cho", param_init="normal:0.01",
    ),
    # seed 004 / d2l `Seq2SeqEncoder` + `Seq2SeqDecoder`.
    "d2l-seq2seq": dict(
        family="rnn", origin="d2l-seq2seq", cell="gru", emb_dim=32, hid_dim=32,
        n_layers=2, dropout=0.1, context="d2l", embed_dropout=False,
    ),
    # seed 002's character addition model: embedding width == hidden width.
    "addition-gru": dict(
        family="rnn", origin="seed002", cell="gru", emb_dim=128, hid_dim=128,
        n_layers=1, dropout=0.0, context="none", embed_dropout=False,
    ),
}


def names() -> list[str]:
    return sorted(PRESETS)


def get(name: str, **overrides: Any) -> ModelConfig:
    """The config of preset `name` with `overrides` applied (unknown keys are errors)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names())}")
    return ModelConfig().replace(**PRESETS[name]).replace(**overrides)
