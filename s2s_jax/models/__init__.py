"""Model registry: every family's record (`family.Family`), gathered from the files of this package.

Each module here other than `family` declares `FAMILY`; nothing else lists the
families, so a new one is a new file (plus its torch mirror and presets).
"""

from __future__ import annotations

import importlib
import pkgutil

import flax.linen as nn

from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.models.family import Family


def _collect() -> dict[str, Family]:
    found: dict[str, Family] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "family":
            continue
        record = importlib.import_module(f"{__name__}.{info.name}").FAMILY
        found[record.name] = record
    return found


FAMILIES: dict[str, Family] = _collect()


def family(cfg: ModelConfig | str) -> Family:
    """The record of `cfg`'s family (or of the family named so); unknown names list the known ones."""
    name = cfg if isinstance(cfg, str) else cfg.family
    if name not in FAMILIES:
        raise ConfigError(f"unknown model family {name!r}; available: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def build_model(cfg: ModelConfig) -> nn.Module:
    """The Flax module for `cfg` (all contract methods usable through `apply(method=...)`)."""
    return family(cfg).module(cfg)


def target_limit(cfg: ModelConfig) -> int | None:
    """The most target positions a model can decode, or None when unbounded (the family record says how).

    Decoders check this so a request they cannot honour is an error, not NaN logits.
    """
    return family(cfg).target_limit(cfg)


def check_decode_len(cfg: ModelConfig, max_len: int) -> None:
    """Refuse to decode more tokens than the model has positions for (a UserError, not NaN logits)."""
    limit = target_limit(cfg)
    if limit is not None and max_len > limit:
        raise UserError(f"cannot decode {max_len} tokens: the {cfg.family} model has {limit} positions (max_len)")
