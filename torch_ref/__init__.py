"""PyTorch mirror of every s2s_jax model, with Flax <-> torch parameter conversion.

Which torch class and conversion table mirror a family is declared in the family's
record (`s2s_jax.models.family.Family.torch_model` / `torch_table`); this package
resolves those names, so it keeps no list of families of its own.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

from s2s_jax.config import ModelConfig
from s2s_jax.models import family


def resolve(name: str) -> Any:
    """The attribute "package.module:attribute" names (a record's torch_model or torch_table)."""
    module, _, attribute = name.partition(":")
    return getattr(importlib.import_module(module), attribute)


def build_model(cfg: ModelConfig) -> torch.nn.Module:
    """The torch module for `cfg`, with the same contract methods as the Flax model."""
    return resolve(family(cfg).torch_model)(cfg)
