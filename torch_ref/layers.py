"""Torch recurrent stacks with the contract of `s2s_jax.layers.rnn.RNNStack`.

The stacks themselves are `nn.RNN/LSTM/GRU` (so their state_dict keys are the
ones original checkpoints carry) or, for the textbook GRU that torch does not
have, `TextbookGRU` with the same parameter names. `run_rnn` / `step_rnn` give
them the Flax calling convention: batch-first inputs and batch-first states
`[B, n_layers * directions, H]` (a pair for LSTM), lengths-aware through packed
sequences, so a row's final state is the state at its true last token and its
outputs past its length are 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

State = Any  # tensor [B, L*D, H], or (h, c) for LSTM


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first `lengths[b]` steps along dim 1; padding stays in place."""
    t = torch.arange(x.shape[1], device=x.device)[None, :]
    n = lengths.to(x.device).long()[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (x.dim() - 2)).expand_as(x)
    return torch.gather(x, 1, idx)


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] boolean, True where t < lengths[b]."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class TextbookGRU(nn.Module):
    """GRU with the reset gate before the recurrent product: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn).

    This is seed 002's hand-written cell (torch's nn.GRU applies r after W_hn).
    Parameters are named and laid out exactly as nn.GRU's (`weight_ih_l0`, gate
    order r, z, n, `_reverse` suffix), so checkpoints and the conversion table
    are shared. Batch-first, lengths-aware by masking; states are nn.GRU's
    `[L * D, B, H]` so `run_rnn` treats it like the built-in modules.
    """

    mode = "GRU"
    batch_first = True

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 bidirectional: bool = False) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dropout, self.bidirectional = dropout, bidirectional
        self.directions = 2 if bidirectional else 1
        bound = 1.0 / math.sqrt(hidden_size)
        for i in range(num_layers):
            width = input_size if i == 0 else hidden_size * self.directions
            for suffix in self._suffixes():
                shapes = {"weight_ih": (3 * hidden_size, width), "weight_hh": (3 * hidden_size, hidden_size),
                          "bias_ih": (3 * hidden_size,), "bias_hh": (3 * hidden_size,)}
                for name, shape in shapes.items():
                    self.register_parameter(f"{name}_l{i}{suffix}",
                                            nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse") if self.bidirectional else ("",)

    @staticmethod
    def cell(xw: torch.Tensor, h: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        """One update from the projected input xw = W_ih x + b_ih; h' = (1 - z) * n + z * h as in torch."""
        xr, xz, xn = xw.chunk(3, dim=-1)
        w_hr, w_hz, w_hn = w_hh.chunk(3, dim=0)
        b_hr, b_hz, b_hn = b_hh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + h @ w_hr.T + b_hr)
        z = torch.sigmoid(xz + h @ w_hz.T + b_hz)
        n = torch.tanh(xn + (r * h) @ w_hn.T + b_hn)
        return (1.0 - z) * n + z * h

    def _direction(self, name: str, x: torch.Tensor, mask: torch.Tensor, h: torch.Tensor):
        xw = x @ getattr(self, f"weight_ih_{name}").T + getattr(self, f"bias_ih_{name}")
        w_hh, b_hh = getattr(self, f"weight_hh_{name}"), getattr(self, f"bias_hh_{name}")
        outs = []
        for t in range(x.shape[1]):
            keep = mask[:, t, None]
            new = self.cell(xw[:, t], h, w_hh, b_hh)
            h = torch.where(keep, new, h)
            outs.append(torch.where(keep, new, torch.zeros_like(new)))
        return torch.stack(outs, dim=1), h

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, h0: torch.Tensor | None = None):
        """x [B, T, in], lengths [B] (None: every row full), h0 [L*D, B, H] -> (outputs [B, T, H*D], h_n)."""
        b, t = x.shape[:2]
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=x.device)
        if h0 is None:
            h0 = x.new_zeros(self.num_layers * self.directions, b, self.hidden_size)
        mask = length_mask(lengths.to(x.device), t)
        finals = []
        for i in range(self.num_layers):
            outs = []
            for d, suffix in enumerate(self._suffixes()):
                h = h0[i * self.directions + d]
                if d == 0:
                    ys, h = self._direction(f"l{i}", x, mask, h)
                else:
                    ys, h = self._direction(f"l{i}{suffix}", reverse_within_lengths(x, lengths), mask, h)
                    ys = reverse_within_lengths(ys, lengths)
                outs.append(ys)
                finals.append(h)
            x = torch.cat(outs, dim=-1)
            if i < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)
        return x, torch.stack(finals, dim=0)


def make_rnn(cell: str, input_size: int, hidden: int, n_layers: int = 1, dropout: float = 0.0,
             bidirectional: bool = False, reset_after: bool = True) -> nn.Module:
    """The torch stack for a cell name; dropout acts between layers only, as in RNNStack."""
    drop = dropout if n_layers > 1 else 0.0  # torch warns about dropout on a 1-layer stack
    if cell == "gru" and not reset_after:
        return TextbookGRU(input_size, hidden, n_layers, drop, bidirectional)
    classes = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
    if cell not in classes:
        raise ValueError(f"cell={cell!r} is not one of {sorted(classes)}")
    return classes[cell](input_size, hidden, n_layers, batch_first=True, dropout=drop, bidirectional=bidirectional)


def _swap(state: State) -> State:
    """Batch-first [B, L*D, H] <-> torch's [L*D, B, H] (each tensor of an LSTM pair)."""
    if isinstance(state, tuple):
        return tuple(s.transpose(0, 1).contiguous() for s in state)
    return state.transpose(0, 1).contiguous()


def run_rnn(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor | None = None,
            initial: State | None = None) -> tuple[torch.Tensor, State]:
    """x [B, T, in] -> (outputs [B, T, H*D], final batch-first state); lengths None means every row is full."""
    h0 = None if initial is None else _swap(initial)
    if isinstance(rnn, TextbookGRU):
        out, hn = rnn(x, lengths, h0)
    elif lengths is None:
        out, hn = rnn(x, h0)
    else:
        packed = pack_padded_sequence(x, lengths.cpu().long(), batch_first=True, enforce_sorted=False)
        out, hn = rnn(packed, h0)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, _swap(hn)


def step_rnn(rnn: nn.Module, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
    """One decoding step of a unidirectional stack: x [B, in] -> (top output [B, H], new state)."""
    out, state = run_rnn(rnn, x[:, None, :], None, state)
    return out[:, 0], state
