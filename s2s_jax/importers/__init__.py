"""Pretrained models from other tools, read from local files into a normal s2s-jax workdir.

- `hf_marian`: a Hugging Face `MarianMTModel.save_pretrained` directory (OPUS-MT), into the marian family;
- `fairseq`: fairseq `transformer` checkpoints (into the marian family, which is fairseq's transformer) and
  `fconv` checkpoints (into the convs2s family, fconv style), with their `dict.*.txt`.

Each reader returns an `Imported`: the model config, the weights as a state dict keyed as the family's torch
mirror keys them (torch_ref; for Marian that is Hugging Face's own layout), checked key by key and shape by
shape, and the model's own tokenizers and vocabularies. `s2s-jax import` (s2s_jax/cli/importing.py) converts
the weights with the family's declared table (`torch_ref.convert.torch_to_flax`, the one conversion path)
and writes the workdir with `workdir.write_imported`, the run writer `train` uses, so `translate`,
`evaluate`, `export` and `train` (fine-tuning, resumable) take it like any other run.

Nothing here downloads anything or imports torch at module import time (torch pickles are read through
`weights.load_torch_pickle`, weights-only, torch imported when called).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.data.vocab import Vocab
from s2s_jax.importers.weights import CheckpointError

__all__ = ["CheckpointError", "Imported"]


@dataclasses.dataclass
class Imported:
    """A checkpoint read and checked: what `write_imported` needs to make a workdir of it.

    state_dict: numpy arrays keyed as the torch mirror of `cfg`'s family keys its state_dict.
    decoding: `DecodeOptions` values the origin's own generation settings imply (e.g. its beam).
    """

    cfg: ModelConfig
    state_dict: dict[str, np.ndarray]
    src_tok: Any
    tgt_tok: Any
    src_vocab: Vocab
    tgt_vocab: Vocab
    preset: str
    source: str
    decoding: dict[str, Any] = dataclasses.field(default_factory=dict)
