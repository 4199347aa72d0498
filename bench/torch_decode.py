"""torch_ref decoding on any torch device, driven by the numpy search loop (`export.search.search_top`).

`export.graphs.numpy_stepper` hands the search numpy arrays, so it runs on CPU only: on a GPU each step would
copy the whole state and the [N, V] log-probs to the host. Here the step is a `TopStepFn` that keeps the
encoder output and the state on the model's device, computes the candidates (live + log-probs, eos forced on a
row's last step) and their top k there (`torch.topk`), and returns only the [N, k] values and ids; the
reorders are `index_select`s on the device. The loop's arithmetic is then the runtime's own, so the tokens are
the ones the numpy search gives (up to `torch.topk`'s order among exactly equal candidates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from export.graphs import contract_step
from export.search import NEG_INF, SearchResult, search_top


def _take(tree: Any, rows: np.ndarray) -> Any:
    """Row i of every tensor of `tree` taken from row rows[i] (on the tensors' device)."""
    leaves = pytree.tree_leaves(tree)
    if not leaves:
        return tree
    index = torch.from_numpy(np.asarray(rows, np.int64)).to(leaves[0].device)
    return pytree.tree_map(lambda x: x.index_select(0, index), tree)


def torch_search(model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, *, beam: int, max_len: int,
                 bos_id: int, eos_id: int, pad_id: int, alpha: float = 0.0) -> SearchResult:
    """Encode src [B, S] (on the model's device) and beam-search it (beam 1: greedy) with the state on the device."""
    device = src.device

    def top_step(enc: Any, token: np.ndarray, state: Any, live: np.ndarray, last: np.ndarray,
                 k: int | None) -> tuple[np.ndarray, np.ndarray | None, Any]:
        logits, state = contract_step(model, enc, torch.from_numpy(np.asarray(token, np.int64)).to(device), state)
        logp = torch.log_softmax(logits.float(), dim=-1)
        last_t = torch.from_numpy(np.asarray(last)).to(device)
        not_eos = torch.arange(logp.shape[-1], device=device) != eos_id
        cand = torch.where(last_t[:, None] & not_eos, torch.tensor(float(NEG_INF), device=device), logp)
        cand = cand + torch.from_numpy(np.asarray(live, np.float32)).to(device)[:, None]
        if k is None:
            return cand.cpu().numpy(), None, state
        values, ids = torch.topk(cand, k, dim=-1)
        return values.cpu().numpy(), ids.cpu().numpy(), state

    with torch.inference_mode():
        enc = model.encode(src, src_lengths)
        state = model.init_decode_state(enc, max_len)
        return search_top(top_step, enc, state, batch=src.shape[0], beam=beam, max_len=max_len, bos_id=bos_id,
                          eos_id=eos_id, pad_id=pad_id, alpha=alpha, reorder=_take, take=_take)
