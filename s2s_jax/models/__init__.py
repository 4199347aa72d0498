"""Model registry: `build_model(cfg)` picks the family's class."""

from __future__ import annotations

import flax.linen as nn

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.models.attention import AttentionSeq2Seq
from s2s_jax.models.convs2s import ConvS2S
from s2s_jax.models.rnn import RNNSeq2Seq
from s2s_jax.models.transformer import TransformerSeq2Seq

FAMILIES: dict[str, type[nn.Module]] = {
    "rnn": RNNSeq2Seq, "attention": AttentionSeq2Seq, "convs2s": ConvS2S, "transformer": TransformerSeq2Seq,
}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The Flax module for `cfg` (all contract methods usable through `apply(method=...)`)."""
    if cfg.family not in FAMILIES:
        raise ConfigError(f"unknown model family {cfg.family!r}; available: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[cfg.family](cfg)
