"""Replaying a JAX teacher-forcing schedule in torch (`s2s_jax/layers/teacher_forcing.py`): the first input is
bos, each later step reads the gold token where `draws[t]` is True and the argmax of the previous step's logits
otherwise, exactly as bentrevett's training loop does with its coin flips; here the flips are given, so the
torch mirror can be checked against the JAX model on the very same schedule."""

from __future__ import annotations

from typing import Any

import torch


def decode_with_draws(model: Any, enc: Any, tgt_in: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Logits [B, T, V] of `model.decode_step` over `tgt_in` [B, T] with the gold-or-own schedule `draws` [T]."""
    state = model.init_decode_state(enc)
    logits, prev = [], None
    for t in range(tgt_in.shape[1]):
        token = tgt_in[:, t] if prev is None or bool(draws[t]) else prev.argmax(dim=-1)
        prev, state = model.decode_step(enc, token, state)[:2]
        logits.append(prev)
    return torch.stack(logits, dim=1)
