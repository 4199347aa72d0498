"""Several exports decoded as one in onnxruntime: their next-token distributions averaged at every step.

The numpy twin of `s2s_jax/decoding/ensemble.py` (fairseq's and OpenNMT's ensembles: the log of the members'
mean probability). `EnsembleStepper` has `OrtStepper`'s interface (`encode`, `top_step`, `reorder`, `take`),
so `export.search.search_top` drives it unchanged; its encoder tensors and state are lists of the members'.
Each member's step returns its whole log-probs (its search head's top-k cannot be merged before averaging).
Imports numpy only (the members are OrtSteppers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from export.search import candidates, top_k


def average_log_probs(log_probs: np.ndarray) -> np.ndarray:
    """[M, N, V] members' log-probs -> [N, V] log of their mean probability, in float32, as JAX computes it."""
    x = log_probs.astype(np.float32, copy=False)
    top = x.max(axis=0)
    return top + np.log(np.exp(x - top).sum(axis=0)) - np.float32(np.log(x.shape[0]))


class EnsembleStepper:
    """The members' steppers behind one `export.search.TopStepFn`."""

    def __init__(self, members: Sequence[Any], eos_id: int) -> None:
        self.members, self.eos_id = list(members), eos_id
        # per-sentence encoder rows only if every member reads them so; a shared-encoder member also reads
        # per-row ones (one row a sentence)
        self.shared_encoder = all(getattr(m, "shared_encoder", False) for m in self.members)

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[list, list]:
        out = [m.encode(src, src_lengths) for m in self.members]
        return [e for e, _ in out], [s for _, s in out]

    def top_step(self, enc: list, token: np.ndarray, state: list, live: np.ndarray, last: np.ndarray,
                 k: int | None) -> tuple[np.ndarray, np.ndarray | None, list]:
        n = len(token)
        zeros, none = np.zeros(n, np.float32), np.zeros(n, bool)
        outs = [m.top_step(e, token, s, zeros, none, None) for m, e, s in zip(self.members, enc, state, strict=True)]
        cand = candidates(average_log_probs(np.stack([o[0] for o in outs])), live, last, self.eos_id)
        states = [o[2] for o in outs]
        if k is None:
            return cand, None, states
        values, ids = top_k(cand, k)
        return values, ids, states

    def reorder(self, state: list, rows: np.ndarray) -> list:
        return [m.reorder(s, rows) for m, s in zip(self.members, state, strict=True)]

    def take(self, enc: list, rows: np.ndarray) -> list:
        return [m.take(e, rows) for m, e in zip(self.members, enc, strict=True)]

    def release(self) -> None:
        """Each member's kept step binding (`OrtStepper.release`), at the end of a search."""
        for m in self.members:
            m.release()
