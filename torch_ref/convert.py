"""Flax <-> torch parameter conversion through one declared table per family.

A table is a list of `Rule(flax_path, torch_key, transform)`; the same table
serves tests, `export`, and the import of original checkpoints. Conversion is
strict both ways: every key on either side must be covered by exactly one rule
and shapes must agree, so a renamed or missing parameter is an error, not a
silently random weight.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
import torch
from flax.traverse_util import flatten_dict, unflatten_dict

from s2s_jax.config import ModelConfig


class Rule(NamedTuple):
    """flax_path is '/'-joined; transform is 'id' or 'T' (Flax Dense kernel [in, out] vs torch [out, in])."""

    flax_path: str
    torch_key: str
    transform: str = "id"


def linear(flax_prefix: str, torch_prefix: str, bias: bool = True) -> list[Rule]:
    """Rules for a Flax `nn.Dense` <-> torch `nn.Linear`."""
    rules = [Rule(f"{flax_prefix}/kernel", f"{torch_prefix}.weight", "T")]
    if bias:
        rules.append(Rule(f"{flax_prefix}/bias", f"{torch_prefix}.bias"))
    return rules


def embedding(flax_prefix: str, torch_prefix: str) -> list[Rule]:
    """Rules for a Flax `nn.Embed` <-> torch `nn.Embedding`."""
    return [Rule(f"{flax_prefix}/embedding", f"{torch_prefix}.weight")]


def rnn_stack(flax_prefix: str, torch_prefix: str, n_layers: int, bidirectional: bool = False) -> list[Rule]:
    """Rules for `s2s_jax.layers.rnn.RNNStack` <-> torch `nn.LSTM/GRU/RNN` (same fused layout)."""
    rules = []
    for i in range(n_layers):
        for suffix in ("", "_reverse") if bidirectional else ("",):
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                rules.append(Rule(f"{flax_prefix}/l{i}{suffix}/{w}", f"{torch_prefix}.{w}_l{i}{suffix}"))
    return rules


def _table(cfg: ModelConfig) -> list[Rule]:
    """The family's declared table (its record names it)."""
    from s2s_jax.models import family
    from torch_ref import resolve

    return resolve(family(cfg).torch_table)(cfg)


def _apply(x: np.ndarray, transform: str) -> np.ndarray:
    return x.T if transform == "T" else x


def torch_to_flax(cfg: ModelConfig, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Flax params (nested dict of jnp float32 arrays) from a torch state_dict."""
    table = _table(cfg)
    missing = [r.torch_key for r in table if r.torch_key not in state_dict]
    extra = sorted(set(state_dict) - {r.torch_key for r in table})
    if missing or extra:
        raise KeyError(f"state_dict does not match the {cfg.family} table: missing {missing}, unexpected {extra}")
    flat = {}
    for r in table:
        value = state_dict[r.torch_key]
        value = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        flat[tuple(r.flax_path.split("/"))] = jnp.asarray(_apply(value, r.transform))
    return unflatten_dict(flat)


def flax_to_torch(cfg: ModelConfig, params: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A torch state_dict (float32 tensors) from Flax params."""
    table = _table(cfg)
    flat = {"/".join(k): v for k, v in flatten_dict(params).items()}
    missing = [r.flax_path for r in table if r.flax_path not in flat]
    extra = sorted(set(flat) - {r.flax_path for r in table})
    if missing or extra:
        raise KeyError(f"Flax params do not match the {cfg.family} table: missing {missing}, unexpected {extra}")
    return {
        r.torch_key: torch.from_numpy(np.array(_apply(np.asarray(flat[r.flax_path]), r.transform), np.float32))
        for r in table
    }


TableFn = Callable[[ModelConfig], list[Rule]]
