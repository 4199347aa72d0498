"""The Family record: what a model family is and can do, declared once, in the family's own model file.

fairseq's "a model is a config plus a class", without import magic: each file in
`s2s_jax/models/` ends with `FAMILY = Family(...)`, and `s2s_jax.models` collects
them. Every place that used to keep its own list of families (the Flax classes,
torch_ref's classes and conversion tables, which families have attention weights
or a positional limit, how beam search may treat a family's state, what the
exporter notes) asks this record instead, so adding a family means its model
file, its torch mirror and its presets, and nothing else.

The torch side is named by import path ("module:attribute") rather than imported:
`s2s_jax` never imports torch, and only `torch_ref` resolves these names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn

from s2s_jax.config import ModelConfig


def no_limit(cfg: ModelConfig) -> int | None:
    """A family whose decoder has no positional limit (recurrent state only)."""
    return None


def max_len_limit(cfg: ModelConfig) -> int | None:
    """A family with a learned position table of cfg.max_len rows, shared by source and target."""
    return cfg.max_len


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    name: the `ModelConfig.family` value.
    module: the Flax class; `module(cfg)` has the model contract (encode, decode, init_decode_state,
        decode_step).
    torch_model, torch_table: "module:attribute" of the torch_ref mirror class and of its Flax <-> torch
        conversion table (`table(cfg) -> list[Rule]`), resolved by `torch_ref`.
    attention: `decode(..., return_attention=True)` returns weights [B, T, S] (or [B, heads, T, S]) to plot.
    target_limit: the most target positions the Flax model can decode for a config, or None (learned position
        tables bound it; a KV cache sized per call does not).
    shared_encoder: `decode_step` accepts the encoder output of B sentences with B * K rows of tokens and state
        (K consecutive rows a sentence), so beam search need not repeat the encoder output per beam.
    reorders_state: the module has `reorder_decode_state(state, rows)`, cheaper than gathering every state leaf.
    state_holds_max_len: the exported decode state has cfg.max_len positions (learned positions, a fixed KV cache),
        so the ONNX runtime must not decode more steps than that.
    cache_state: the torch mirror also has `init_cache_state(enc, capacity)` and
        `decode_step_cached(enc, token, state, length) -> (logits, rows)`: KV-cache buffers of which the first
        `length` positions are decoded, and a step that reads them and returns only the new position (`rows`);
        the exported ONNX step uses it and the runtime writes the rows into its buffers in place
        (export/cache.py), so a step neither copies the cache nor holds cfg.max_len positions.
    export_note: what the family contributes to the ONNX export path (shown by the exporter's docs and errors).
    """

    name: str
    module: type[nn.Module]
    torch_model: str
    torch_table: str
    attention: bool = False
    target_limit: Callable[[ModelConfig], int | None] = no_limit
    shared_encoder: bool = False
    reorders_state: bool = False
    state_holds_max_len: bool = False
    cache_state: bool = False
    export_note: str = ""
