"""Lengths-aware recurrent layers that export to ONNX's own RNN/GRU/LSTM with `sequence_lens`.

Why: torch_ref's stacks are lengths-aware through `pack_padded_sequence`, whose
output shape depends on the data, so `torch.export` cannot trace it. The
exporter does translate a plain `nn.GRU` (`aten.gru`), but without lengths, so
a padded row would run its recurrence over its padding. An unrolled loop would
freeze the source length. ONNX's recurrent ops already have the semantics we
need: `sequence_lens` stops each row at its true length (Y_h is the state at
the last real token, the reverse direction starts at the true end, Y is 0
past the end), which is exactly what packing gives in torch.

So each layer becomes one torch custom op (`s2s_export::rnn`, `s2s_export::lstm`)
whose signature *is* the ONNX op's (ONNX gate order and weight layout, one
layer, both directions), and `TRANSLATIONS` maps it 1:1 onto the ONNX node via
`torch.onnx.export(custom_translation_table=...)`. The eager implementation
below follows the ONNX equations (it is what runs if the swapped model is
called in torch, and documents the math); the exported graph is checked
against torch_ref's packed `nn.GRU/LSTM/RNN` in the tests.

`swap_rnns(model)` replaces every recurrent stack inside a torch_ref model with
`OnnxRNN`, which holds the same weights in ONNX layout. `torch_ref.layers.run_rnn`
calls lengths-aware stacks (`TextbookGRU` and its subclasses) as
`rnn(x, lengths, h0)` instead of packing, so `OnnxRNN` subclasses it to take
that path; every family that runs its stacks through `run_rnn`/`step_rnn`
(rnn, attention) exports without family-specific code.
"""

from __future__ import annotations

from typing import Any

import torch
from onnxscript import opset18 as op
from torch import nn

from torch_ref.layers import TextbookGRU, length_mask, reverse_within_lengths

INT32 = 6  # onnx.TensorProto.INT32, without importing onnx here

# torch gate order -> ONNX gate order, as chunk indices of torch's fused matrices.
GATE_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn_tanh": [0], "rnn_relu": [0]}  # LSTM ifgo->iofc, GRU rzn->zrn
ACTIVATIONS = {"rnn_tanh": "Tanh", "rnn_relu": "Relu"}


# ---------------------------------------------------------------------------------------------
# Eager math, ONNX conventions: W [D, G*H, in], R [D, G*H, H], B [D, 2*G*H] = [Wb; Rb], states [D, B, H].


def _cell(cell: str, xw: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None, r: torch.Tensor,
          rb: torch.Tensor, linear_before_reset: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One ONNX cell update from the projected input xw = X W^T + Wb."""
    if cell == "lstm":
        i, o, f, g = (xw + h @ r.T + rb).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if cell == "gru":
        xz, xr, xh = xw.chunk(3, dim=-1)
        r_z, r_r, r_h = r.chunk(3, dim=0)
        b_z, b_r, b_h = rb.chunk(3, dim=-1)
        z = torch.sigmoid(xz + h @ r_z.T + b_z)
        reset = torch.sigmoid(xr + h @ r_r.T + b_r)
        if linear_before_reset:
            n = torch.tanh(xh + reset * (h @ r_h.T + b_h))
        else:
            n = torch.tanh(xh + (reset * h) @ r_h.T + b_h)
        return (1.0 - z) * n + z * h, None
    pre = xw + h @ r.T + rb
    return (torch.relu(pre) if cell == "rnn_relu" else torch.tanh(pre)), None


def _eager(cell: str, x: torch.Tensor, lengths: torch.Tensor | None, h0: torch.Tensor, c0: torch.Tensor | None,
           w: torch.Tensor, r: torch.Tensor, b: torch.Tensor, linear_before_reset: int):
    """x [B, T, in] batch-first -> (y [B, T, D*H], h_n [D, B, H], c_n or None), lengths-aware."""
    batch, steps = x.shape[:2]
    if lengths is None:
        lengths = torch.full((batch,), steps, dtype=torch.long, device=x.device)
    mask = length_mask(lengths, steps)
    ys, hs, cs = [], [], []
    for d in range(w.shape[0]):
        gates = w.shape[1]
        wb, rb = b[d, :gates], b[d, gates:]
        xd = x if d == 0 else reverse_within_lengths(x, lengths)
        xw = xd @ w[d].T + wb
        h, c = h0[d], None if c0 is None else c0[d]
        outs = []
        for t in range(steps):
            new_h, new_c = _cell(cell, xw[:, t], h, c, r[d], rb, linear_before_reset)
            keep = mask[:, t, None]
            h = torch.where(keep, new_h, h)
            c = None if c is None else torch.where(keep, new_c, c)
            outs.append(torch.where(keep, new_h, torch.zeros_like(new_h)))
        y = torch.stack(outs, dim=1)
        ys.append(y if d == 0 else reverse_within_lengths(y, lengths))
        hs.append(h)
        cs.append(c)
    c_n = None if c0 is None else torch.stack(cs)
    return torch.cat(ys, dim=-1), torch.stack(hs), c_n


# ---------------------------------------------------------------------------------------------
# Custom ops (one layer, ONNX layout) and their ONNX translations.


@torch.library.custom_op("s2s_export::rnn", mutates_args=())
def rnn_layer(x: torch.Tensor, lengths: torch.Tensor | None, h0: torch.Tensor, w: torch.Tensor, r: torch.Tensor,
              b: torch.Tensor, cell: str, hidden: int, linear_before_reset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Elman (`rnn_tanh`/`rnn_relu`) or GRU layer: ONNX RNN/GRU semantics, batch-first x and y."""
    y, h, _ = _eager(cell, x, lengths, h0, None, w, r, b, linear_before_reset)
    return y, h


@rnn_layer.register_fake
def _(x, lengths, h0, w, r, b, cell, hidden, linear_before_reset):
    return x.new_empty(x.shape[0], x.shape[1], w.shape[0] * hidden), h0.new_empty(h0.shape)


@torch.library.custom_op("s2s_export::lstm", mutates_args=())
def lstm_layer(x: torch.Tensor, lengths: torch.Tensor | None, h0: torch.Tensor, c0: torch.Tensor, w: torch.Tensor,
               r: torch.Tensor, b: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LSTM layer: ONNX LSTM semantics (gates i, o, f, c; no peepholes), batch-first x and y."""
    return _eager("lstm", x, lengths, h0, c0, w, r, b, 0)


@lstm_layer.register_fake
def _(x, lengths, h0, c0, w, r, b, hidden):
    return x.new_empty(x.shape[0], x.shape[1], w.shape[0] * hidden), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def _onnx_inputs(x, lengths):
    """ONNX recurrent ops are time-major (ORT's CPU kernels reject layout=1) and take int32 lengths."""
    return op.Transpose(x, perm=[1, 0, 2]), (None if lengths is None else op.Cast(lengths, to=INT32))


def _onnx_output(y):
    """Y [T, D, B, H] -> batch-first [B, T, D*H], directions concatenated as torch does."""
    return op.Reshape(op.Transpose(y, perm=[2, 0, 1, 3]), [0, 0, -1])


def rnn_layer_onnx(x, lengths, h0, w, r, b, cell: str, hidden: int, linear_before_reset: int):
    xt, seq_lens = _onnx_inputs(x, lengths)
    directions = w.shape[0]
    direction = "bidirectional" if directions == 2 else "forward"
    if cell == "gru":
        y, y_h = op.GRU(xt, w, r, b, sequence_lens=seq_lens, initial_h=h0, hidden_size=hidden,
                        direction=direction, linear_before_reset=linear_before_reset)
    else:
        y, y_h = op.RNN(xt, w, r, b, sequence_lens=seq_lens, initial_h=h0, hidden_size=hidden,
                        direction=direction, activations=[ACTIVATIONS[cell]] * directions)
    return _onnx_output(y), y_h


def lstm_layer_onnx(x, lengths, h0, c0, w, r, b, hidden: int):
    xt, seq_lens = _onnx_inputs(x, lengths)
    direction = "bidirectional" if w.shape[0] == 2 else "forward"
    y, y_h, y_c = op.LSTM(xt, w, r, b, sequence_lens=seq_lens, initial_h=h0, initial_c=c0, hidden_size=hidden,
                          direction=direction)
    return _onnx_output(y), y_h, y_c


TRANSLATIONS = {torch.ops.s2s_export.rnn.default: rnn_layer_onnx, torch.ops.s2s_export.lstm.default: lstm_layer_onnx}


# ---------------------------------------------------------------------------------------------
# The stack module that replaces torch_ref's recurrent stacks for export.


def cell_of(module: nn.Module) -> tuple[str, int]:
    """(ONNX cell name, linear_before_reset) of a torch_ref recurrent stack."""
    if isinstance(module, TextbookGRU):
        return "gru", 0  # seed 002's reset-before-product GRU is ONNX's default GRU
    if isinstance(module, nn.GRU):
        return "gru", 1  # torch applies r after W_hn h + b_hn: ONNX linear_before_reset=1
    if isinstance(module, nn.LSTM):
        return "lstm", 0
    if isinstance(module, nn.RNN):
        return f"rnn_{module.nonlinearity}", 0
    raise TypeError(f"not a recurrent stack: {type(module).__name__}")


def is_rnn(module: nn.Module) -> bool:
    return isinstance(module, (nn.RNNBase, TextbookGRU)) and not isinstance(module, OnnxRNN)


class OnnxRNN(TextbookGRU):
    """A recurrent stack of per-layer custom ops with the weights of `source` in ONNX layout.

    Subclasses TextbookGRU only so that `run_rnn` calls it with lengths (no
    packing); it holds no TextbookGRU parameters. Inference only: dropout
    between layers is not applied.
    """

    def __init__(self, source: nn.Module) -> None:
        nn.Module.__init__(self)
        self.cell, self.linear_before_reset = cell_of(source)
        if getattr(source, "proj_size", 0):
            raise ValueError("LSTM projections (proj_size) have no ONNX LSTM equivalent")
        if isinstance(source, nn.RNNBase) and (not source.batch_first or not source.bias):
            raise ValueError("torch_ref stacks are batch-first with biases; got another nn.RNNBase")
        self.hidden_size, self.num_layers = source.hidden_size, source.num_layers
        self.bidirectional = source.bidirectional
        self.directions = 2 if source.bidirectional else 1
        order = GATE_ORDER[self.cell]
        for i in range(self.num_layers):
            ws, rs, bs = [], [], []
            for suffix in ("", "_reverse")[: self.directions]:
                def get(name: str, i: int = i, suffix: str = suffix) -> torch.Tensor:
                    weight = getattr(source, f"{name}_l{i}{suffix}").detach()
                    return torch.cat([weight.chunk(len(order), dim=0)[g] for g in order], dim=0)

                ws.append(get("weight_ih"))
                rs.append(get("weight_hh"))
                bs.append(torch.cat([get("bias_ih"), get("bias_hh")]))
            self.register_buffer(f"W_l{i}", torch.stack(ws))
            self.register_buffer(f"R_l{i}", torch.stack(rs))
            self.register_buffer(f"B_l{i}", torch.stack(bs))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, h0: Any = None):
        """x [B, T, in], lengths [B] or None, h0 [L*D, B, H] (pair for LSTM) -> (y [B, T, D*H], h_n like h0)."""
        shape = (self.num_layers * self.directions, x.shape[0], self.hidden_size)
        if h0 is None:
            h0 = (x.new_zeros(shape), x.new_zeros(shape)) if self.cell == "lstm" else x.new_zeros(shape)
        hs, cs = [], []
        for i in range(self.num_layers):
            rows = slice(i * self.directions, (i + 1) * self.directions)
            w, r, b = getattr(self, f"W_l{i}"), getattr(self, f"R_l{i}"), getattr(self, f"B_l{i}")
            if self.cell == "lstm":
                x, h, c = torch.ops.s2s_export.lstm(x, lengths, h0[0][rows], h0[1][rows], w, r, b, self.hidden_size)
                cs.append(c)
            else:
                x, h = torch.ops.s2s_export.rnn(x, lengths, h0[rows], w, r, b, self.cell, self.hidden_size,
                                                self.linear_before_reset)
            hs.append(h)
        h_n = torch.cat(hs, dim=0)
        return x, ((h_n, torch.cat(cs, dim=0)) if self.cell == "lstm" else h_n)


def swap_rnns(model: nn.Module) -> int:
    """Replace every recurrent stack inside `model` by its `OnnxRNN` twin, in place; return how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_rnn(child):
                setattr(parent, name, OnnxRNN(child))
                count += 1
    return count
