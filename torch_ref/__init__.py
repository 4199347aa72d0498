"""PyTorch mirror of every s2s_jax model, with Flax <-> torch parameter conversion."""

from __future__ import annotations

import torch

from s2s_jax.config import ModelConfig


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """The torch module for `cfg`, with the same contract methods as the Flax model."""
    from torch_ref.models import MODELS

    if cfg.family not in MODELS:
        raise ValueError(f"torch_ref has no model for family {cfg.family!r}")
    return MODELS[cfg.family](cfg)
