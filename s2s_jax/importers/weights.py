"""Reading checkpoint files into numpy, and the strict key-by-key check every importer ends with.

- safetensors (`model.safetensors`, sharded with `model.safetensors.index.json`): read with
  `safetensors.numpy`, no torch;
- torch pickles (`pytorch_model.bin`, fairseq's `checkpoint_best.pt`): `torch.load(weights_only=True)`,
  torch imported here only, lazily (s2s_jax imports without torch). A pickle's other objects (fairseq's
  argparse.Namespace, omegaconf configs, meters) are classes the weights-only unpickler refuses, and
  fairseq need not be installed: each such class, named by `torch.serialization.
  get_unsafe_globals_in_checkpoint`, is replaced by an inert `Opaque` that only records its state
  (never a call into other code), and `plain` turns those back into dicts.

`check_state` compares a state dict with the layout an importer expects (key -> shape) and raises
`CheckpointError` naming the first missing, unexpected or mis-shaped key.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from s2s_jax.errors import UserError

Shapes = Mapping[str, tuple[int, ...]]


class CheckpointError(UserError):
    """A checkpoint that does not match the layout it claims (missing, extra or mis-shaped key, wrong arch)."""


class Opaque:
    """Stands in for a class a checkpoint pickles but its weights do not need: keeps constructor arguments and
    pickled state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def plain(obj: Any) -> Any:
    """Namespaces, omegaconf nodes (as `Opaque` state: `_content`, `_val`) and containers -> dicts, lists, values."""
    if isinstance(obj, argparse.Namespace):
        return {k: plain(v) for k, v in vars(obj).items()}
    if isinstance(obj, Opaque):
        state = getattr(obj, "state", None)
        state = state[0] if isinstance(state, tuple) and state else state
        if isinstance(state, dict):
            for key in ("_content", "_val"):
                if key in state:
                    return plain(state[key])
            return {k: plain(v) for k, v in state.items() if not k.startswith("_")}
        return None
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


def to_numpy(value: Any) -> np.ndarray:
    """A tensor or array as float32 numpy (checkpoints may be fp16 / bf16)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().float().numpy()
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype.kind == "f" and array.dtype != np.float32 else array


def load_torch_pickle(path: str | Path) -> Any:
    """`torch.load(path, weights_only=True)` with tensors as numpy arrays and unknown classes as `Opaque`."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format: the unpickler below still refuses what it must
        unsafe = []
    stubs = [(type(name.rsplit(".", 1)[-1], (Opaque,), {}), name) for name in unsafe if name != "argparse.Namespace"]
    try:
        with torch.serialization.safe_globals([argparse.Namespace, *stubs]):
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is not a readable torch checkpoint: {first[:300]}") from None

    def convert(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return to_numpy(obj)
        if isinstance(obj, Mapping):
            return {k: convert(v) for k, v in obj.items()}
        return obj

    return convert(data)


def load_safetensors(directory: Path) -> dict[str, np.ndarray]:
    """`model.safetensors`, or the shards `model.safetensors.index.json` lists, as float32 numpy arrays."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    index = directory / "model.safetensors.index.json"
    files = [directory / "model.safetensors"]
    if index.is_file():
        try:
            files = [directory / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is not a safetensors index ({e})") from None
    state: dict[str, np.ndarray] = {}
    for f in files:
        try:
            state.update({k: to_numpy(v) for k, v in load_file(str(f)).items()})
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{f} is not a readable safetensors file ({e})") from None
    return state


def check_state(state: Mapping[str, np.ndarray], expected: Shapes, source: str) -> None:
    """Raise CheckpointError naming the first key of `state` that is missing, unexpected or of the wrong shape."""
    missing = [k for k in expected if k not in state]
    extra = sorted(set(state) - set(expected))
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"{source}: missing key {missing[0]!r}{more}; the checkpoint is partial or of "
                              "another architecture")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r}{more}; the checkpoint has parts this "
                              "architecture does not")
    for key, shape in expected.items():
        if tuple(state[key].shape) != tuple(shape):
            raise CheckpointError(f"{source}: key {key!r} has shape {tuple(state[key].shape)}, the config says "
                                  f"{tuple(shape)}")
