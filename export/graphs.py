"""The two exported graphs as torch modules, written once against the model contract.

`EncoderGraph`: (src [B, S], src_lengths [B]) -> the encoder-output tensors the
decoder step reads, then the initial decode state. `DecoderStepGraph`:
(token [B], encoder tensors, state tensors) -> (log-probs [B, V], next state).

Nothing here knows a family: `EncoderOutput` and `DecodeState` are flattened
as pytrees into named tensors (`enc.context`, `state.carry.0`, ...), batch on
axis 0 as the contract requires, so the runtime can repeat and gather beams
without knowing what they hold. Precomputed attention keys are just another
encoder tensor. A family plugs in by having a torch_ref model whose contract
methods trace under `torch.export` (its record's `export_note` says how).
Where the record says `cache_state`, the graphs use the mirror's cache state
instead of the contract's fixed one (`StateMethods`): the encoder graph returns
no state (the runtime allocates the buffers, export/cache.py), and the step
takes the buffers and their decoded `length` and returns only the new position,
so a step's cost follows the decoded length instead of cfg.max_len and no step
copies the cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree


def _key_name(key: Any) -> str:
    for attr in ("name", "idx", "key"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flatten(tree: Any, prefix: str) -> tuple[list[str], list[torch.Tensor], pytree.TreeSpec]:
    """(names like `prefix.carry.0`, tensors, spec) of a pytree of tensors."""
    with_path, spec = pytree.tree_flatten_with_path(tree)
    names = [".".join([prefix, *(_key_name(k) for k in path)]) for path, _ in with_path]
    return names, [leaf for _, leaf in with_path], spec


def contract_step(model: nn.Module, enc: Any, token: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
    """decode_step's (logits, state); attention models may append weights, which the runtime does not need."""
    out = model.decode_step(enc, token, state)
    return out[0], out[1]


class StateMethods:
    """The decode state the exported graphs carry: the contract's (`init_decode_state`, `decode_step`), or, where
    the family record says `cache_state`, the mirror's cache buffers (`init_cache_state`, `decode_step_cached`),
    whose step returns the new position's rows instead of the next state."""

    def __init__(self, model: nn.Module, cached: bool) -> None:
        self.model, self.cached = model, cached

    def init(self, enc: Any, capacity: int = 1) -> Any:
        return self.model.init_cache_state(enc, capacity) if self.cached else self.model.init_decode_state(enc)

    def step(self, enc: Any, token: torch.Tensor, state: Any,
             length: torch.Tensor | None = None) -> tuple[torch.Tensor, Any]:
        if not self.cached:
            return contract_step(self.model, enc, token, state)
        out = self.model.decode_step_cached(enc, token, state, length)
        return out[0], out[1]


class EncoderGraph(nn.Module):
    """encode + the initial decode state, returning the kept encoder leaves then every state leaf (none for a
    cache state: the runtime allocates its buffers)."""

    def __init__(self, model: nn.Module, keep: list[int] | None = None, cached: bool = False) -> None:
        super().__init__()
        self.model, self.keep, self.methods = model, keep, StateMethods(model, cached)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        enc = self.model.encode(src, src_lengths)
        enc_leaves = pytree.tree_leaves(enc)
        if self.keep is not None:
            enc_leaves = [enc_leaves[i] for i in self.keep]
        if self.methods.cached:
            return tuple(enc_leaves)
        return (*enc_leaves, *pytree.tree_leaves(self.methods.init(enc)))


class DecoderStepGraph(nn.Module):
    """One decode_step with log_softmax inside; encoder leaves not in `keep` are None (unused by the step). With a
    cache state the step also takes `length` (a 0-d int64) and returns the new position's rows, not a state,
    stacked into one tensor (one output instead of one per cache tensor: each output costs the runtime a binding
    and an OrtValue a step). `in_place`: the step's attention writes the buffers itself (export/attention_op.py),
    so it returns the log-probs alone."""

    def __init__(self, model: nn.Module, enc_spec: pytree.TreeSpec, keep: list[int],
                 state_spec: pytree.TreeSpec, cached: bool = False, in_place: bool = False) -> None:
        super().__init__()
        self.model, self.enc_spec, self.keep, self.state_spec = model, enc_spec, keep, state_spec
        self.methods, self.in_place = StateMethods(model, cached), in_place

    def forward(self, token: torch.Tensor, enc: tuple[torch.Tensor, ...], state: tuple[torch.Tensor, ...],
                length: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        leaves: list[Any] = [None] * self.enc_spec.num_leaves
        for i, tensor in zip(self.keep, enc, strict=True):
            leaves[i] = tensor
        enc_tree = pytree.tree_unflatten(leaves, self.enc_spec)
        logits, new_state = self.methods.step(enc_tree, token, pytree.tree_unflatten(list(state), self.state_spec),
                                              length)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if self.in_place:
            return (log_probs,)
        if self.methods.cached:
            return log_probs, torch.stack(pytree.tree_leaves(new_state))
        return (log_probs, *pytree.tree_leaves(new_state))


def numpy_stepper(model: nn.Module, src: torch.Tensor, src_lengths: torch.Tensor,
                  max_decode_len: int | None = None) -> tuple[Any, list[np.ndarray], list[np.ndarray]]:
    """(step, enc arrays, state arrays) for `export.search.search` over a torch model: torch_ref driven by the
    same numpy search as the ONNX runtime (the token-identity tests, bench/decode.py, bench/onnx_latency.py).

    `step(enc, token, state) -> (log_probs [N, V], state)` takes and returns numpy arrays, as the search's step
    contract says; the conversions are zero-copy views (`torch.from_numpy`, `Tensor.numpy`), so what the search
    adds over torch's own loop is its numpy arithmetic, which the ORT path runs too. `max_decode_len` sizes the
    initial state as `init_decode_state(enc, max_decode_len)` does (a KV cache; other families ignore it)."""
    with torch.inference_mode():
        enc = model.encode(src, src_lengths)
        state = model.init_decode_state(enc, max_decode_len)
    _, enc_leaves, enc_spec = flatten(enc, "enc")
    _, state_leaves, state_spec = flatten(state, "state")

    def step(enc_arrays: list[np.ndarray], token: np.ndarray,
             state_arrays: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
        with torch.inference_mode():
            enc_tree = pytree.tree_unflatten([torch.from_numpy(a) for a in enc_arrays], enc_spec)
            state_tree = pytree.tree_unflatten([torch.from_numpy(a) for a in state_arrays], state_spec)
            logits, new_state = contract_step(model, enc_tree, torch.from_numpy(token), state_tree)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
        return log_probs.numpy(), [leaf.numpy() for leaf in pytree.tree_leaves(new_state)]

    return step, [leaf.numpy() for leaf in enc_leaves], [leaf.numpy() for leaf in state_leaves]
