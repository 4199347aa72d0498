"""Model registry: `build_model(cfg)` picks the family's class."""

from __future__ import annotations

import flax.linen as nn

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.errors import UserError
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


def target_limit(cfg: ModelConfig) -> int | None:
    """The most target positions a model can decode, or None when unbounded.

    Learned position tables have `max_len` rows; the Transformer's KV cache is sized
    per decoding call, so only learned positions bound it. Decoders check this so a
    request they cannot honour is an error, not NaN logits.
    """
    if cfg.family == "convs2s" or (cfg.family == "transformer" and cfg.positions == "learned"):
        return cfg.max_len
    return None


def check_decode_len(cfg: ModelConfig, max_len: int) -> None:
    """Refuse to decode more tokens than the model has positions for (a UserError, not NaN logits)."""
    limit = target_limit(cfg)
    if limit is not None and max_len > limit:
        raise UserError(f"cannot decode {max_len} tokens: the {cfg.family} model has {limit} positions (max_len)")
