"""The PyTorch side of the training benchmark: torch_ref's model, the JAX step's loss and optimizer, eager or compiled.

The step mirrors `s2s_jax.training.steps`: masked mean cross-entropy over target
tokens t < tgt_lengths, gradients clipped to a global norm, Adam. With
`compiled=True` the model and loss (one module) go through `torch.compile` in its
default mode; backward runs through the graphs AOTAutograd compiled with them,
the optimizer stays eager, as in the usual `model = torch.compile(model)` setup.
On any device (the model's; `to_torch(batch, device)`); `dtype=torch.bfloat16` runs model and loss under
`torch.autocast`, torch's usual mixed precision (float32 weights and optimizer, bf16 matmuls and convolutions).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


class MaskedLoss(nn.Module):
    """Model + loss as one module, so `torch.compile` sees (and fuses) both."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor,
                tgt_lengths: torch.Tensor) -> torch.Tensor:
        logits = self.model(src, src_lengths, tgt_in)
        mask = (torch.arange(tgt_out.shape[1], device=tgt_out.device)[None, :] < tgt_lengths[:, None]).float()
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), tgt_out, reduction="none")
        return (losses * mask).sum() / mask.sum().clamp(min=1.0)


def to_torch(batch: dict[str, np.ndarray], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v.astype(np.int64)).to(device) for k, v in batch.items()}


class TorchTrainer:
    """A private copy of `model` (so eager and compiled runs start from the same weights) and its Adam state."""

    def __init__(self, model: nn.Module, lr: float, clip: float, compiled: bool,
                 dtype: torch.dtype | None = None) -> None:
        self.model = copy.deepcopy(model).train()
        self.dtype, self.device_type = dtype, next(self.model.parameters()).device.type
        self.loss = MaskedLoss(self.model)
        if compiled:
            self.loss = torch.compile(self.loss)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.clip = clip

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        return float(self.step_async(batch))

    def step_async(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """One step, its loss left on the device (no host sync: a GPU timing synchronizes once at the end)."""
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device_type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None):
            loss = self.loss(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["tgt_out"],
                             batch["tgt_lengths"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return loss.detach()
