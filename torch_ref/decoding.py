"""Greedy and beam search in PyTorch over a torch_ref model, step for step the JAX algorithms.

The reference for `s2s_jax.decoding` (`sampling.sample_decode` at temperature 0,
which is greedy with per-row length limits, and `beam.beam_search`): the same
float32 arithmetic, eos forced on a row's last allowed step, 2K candidates of
which the best K non-eos stay live, eos candidates finalized only from the top
K, GNMT length penalty, and the same early stop. Ties go to the lower index, as
`jax.lax.top_k` and `jnp.argmax` break them, so both give the same tokens (see `top_k` for the one
exception, equal scores straddling the k-th place).

Used by bench/decode.py to time an eager PyTorch decoding loop against the
jitted JAX one, and by tests to check they agree.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

NEG_INF = -1.0e9


class BeamResult(NamedTuple):
    """tokens [B, K, L] (pad after eos), lengths [B, K] (through eos), scores [B, K]; best first."""

    tokens: torch.Tensor
    lengths: torch.Tensor
    scores: torch.Tensor


def tree_map(fn: Any, tree: Any) -> Any:
    """Apply `fn` to every tensor of a nest of (named) tuples, lists and dicts."""
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, x) for x in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, x) for x in tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    return tree


def top_k(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Largest k along the last axis in jax.lax.top_k's order (value descending, ties to the lower index).

    Wide inputs (beam x vocab candidates) go through torch.topk, whose pick is then put in that order; the
    two can differ only when equal values straddle the k-th place. Narrow ones are sorted stably, exactly.
    """
    if x.shape[-1] > 4 * k:
        idx = torch.sort(torch.topk(x, k, dim=-1).indices, dim=-1).values  # ascending index, so ties keep it
        values, order = torch.sort(torch.gather(x, -1, idx), dim=-1, descending=True, stable=True)
        return values, torch.gather(idx, -1, order)
    values, idx = torch.sort(x, dim=-1, descending=True, stable=True)
    return values[..., :k], idx[..., :k]


def _limits(batch: int, max_len: int, row_max_len: torch.Tensor | None) -> torch.Tensor:
    full = torch.full((batch,), max_len, dtype=torch.int64)
    return full if row_max_len is None else torch.minimum(row_max_len.to(torch.int64), full)


@torch.inference_mode()
def greedy_decode(
    model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, *, max_len: int, bos_id: int, eos_id: int,
    pad_id: int, row_max_len: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, max_len] (pad after eos) and lengths [B]; stops when every row has emitted eos."""
    batch = src.shape[0]
    enc = model.encode(src, src_lengths)
    state = model.init_decode_state(enc, max_len)
    limit = _limits(batch, max_len, row_max_len)
    token = torch.full((batch,), bos_id, dtype=torch.int64)
    done = torch.zeros(batch, dtype=torch.bool)
    tokens = torch.full((batch, max_len), pad_id, dtype=torch.int64)
    t = 0
    while t < max_len and not bool(done.all()):
        logits, state = model.decode_step(enc, token, state)
        last = (t + 1 >= limit)[:, None]
        logits = torch.where(last & (torch.arange(logits.shape[-1]) != eos_id), NEG_INF, logits.float())
        nxt = torch.where(done, pad_id, torch.argmax(logits, dim=-1))
        tokens[:, t] = nxt
        done |= nxt == eos_id
        token = nxt
        t += 1
    is_eos = tokens == eos_id
    first = torch.argmax(is_eos.to(torch.int64), dim=1) + 1
    lengths = torch.where(is_eos.any(dim=1), first, torch.full_like(first, max_len))
    return tokens, lengths


def length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    return ((5.0 + length.float()) / 6.0) ** alpha


def gather_beams(tree: Any, idx: torch.Tensor, batch: int, beam: int) -> Any:
    """Select beams `idx` [B, K'] from a [B * beam, ...] nest, giving [B * K', ...]."""

    def gather(x: torch.Tensor) -> torch.Tensor:
        x = x.reshape((batch, beam) + tuple(x.shape[1:]))
        index = idx.reshape(tuple(idx.shape) + (1,) * (x.ndim - 2)).expand((batch, idx.shape[1]) + tuple(x.shape[2:]))
        return torch.gather(x, 1, index).reshape((batch * idx.shape[1],) + tuple(x.shape[2:]))

    return tree_map(gather, tree)


@torch.inference_mode()
def beam_search(model: torch.nn.Module, src: torch.Tensor, src_lengths: torch.Tensor, *, beam: int, max_len: int,
                bos_id: int, eos_id: int, pad_id: int = 0, alpha: float = 0.0,
                row_max_len: torch.Tensor | None = None) -> BeamResult:
    """n-best beam search, best first (see the module docstring for the exact algorithm)."""
    batch = src.shape[0]
    enc = tree_map(lambda x: x.repeat_interleave(beam, dim=0), model.encode(src, src_lengths))
    state = model.init_decode_state(enc, max_len)
    limit = _limits(batch, max_len, row_max_len)
    live_tokens = torch.zeros((batch, beam, max_len + 1), dtype=torch.int64)
    live_tokens[:, :, 0] = bos_id
    done_tokens = live_tokens.clone()
    live_logp = torch.tensor([0.0] + [NEG_INF] * (beam - 1)).repeat(batch, 1)
    done_scores = torch.full((batch, beam), NEG_INF)
    done_lengths = torch.zeros((batch, beam), dtype=torch.int64)

    def can_improve(t: int) -> bool:
        best_len = limit if alpha >= 0 else torch.full((batch,), t + 1)
        best_live = live_logp[:, 0] / length_penalty(best_len, alpha)
        return bool(torch.any((best_live > done_scores[:, -1]) & (t < limit)))

    t = 0
    while t < max_len and can_improve(t):
        logits, state = model.decode_step(enc, live_tokens[:, :, t].reshape(-1), state)
        logp = torch.log_softmax(logits.float(), dim=-1).reshape(batch, beam, -1)
        vocab = logp.shape[-1]
        last = (t + 1 >= limit)[:, None, None]
        logp = torch.where(last & (torch.arange(vocab) != eos_id), NEG_INF, logp)
        cand = (live_logp[:, :, None] + logp).reshape(batch, beam * vocab)

        top_logp, top_idx = top_k(cand, 2 * beam)
        src_beam, tok = top_idx // vocab, top_idx % vocab
        new_tokens = torch.gather(live_tokens, 1, src_beam[:, :, None].expand(-1, -1, max_len + 1)).clone()
        new_tokens[:, :, t + 1] = tok
        is_eos = tok == eos_id
        alive = t < limit

        live_logp, pick = top_k(torch.where(is_eos, NEG_INF, top_logp), beam)
        live_tokens = torch.gather(new_tokens, 1, pick[:, :, None].expand(-1, -1, max_len + 1))
        state = gather_beams(state, torch.gather(src_beam, 1, pick), batch, beam)

        in_top = (torch.arange(2 * beam) < beam)[None, :]
        finish = is_eos & in_top & alive[:, None]
        eos_scores = torch.where(finish, top_logp / length_penalty(torch.tensor(float(t + 1)), alpha), NEG_INF)
        all_scores = torch.cat([done_scores, eos_scores], dim=1)
        all_tokens = torch.cat([done_tokens, new_tokens], dim=1)
        all_lengths = torch.cat([done_lengths, torch.full_like(src_beam, t + 1)], dim=1)
        done_scores, keep = top_k(all_scores, beam)
        done_tokens = torch.gather(all_tokens, 1, keep[:, :, None].expand(-1, -1, max_len + 1))
        done_lengths = torch.gather(all_lengths, 1, keep)
        t += 1

    tokens = done_tokens[:, :, 1:]
    positions = torch.arange(max_len)[None, None, :]
    tokens = torch.where(positions < done_lengths[:, :, None], tokens, pad_id)
    return BeamResult(tokens=tokens, lengths=done_lengths, scores=done_scores)
