"""Scanned, lengths-aware RNN layers and stacks in PyTorch's fused parameter layout.

`RNNLayer` is one direction of one layer. Its parameters are named as in
`torch.nn.LSTM/GRU/RNN` (`weight_ih [G*H, in]`, `weight_hh [G*H, H]`, `bias_ih`,
`bias_hh`), so conversion is a rename. The input projection for all time steps is
one matmul before the scan; `nn.scan` runs only the recurrent update.

Lengths: positions at or past a row's length neither change the carry nor emit
output (their outputs are 0, as with packed sequences in torch), so the final
carry is the state at each row's true last token. The reverse direction reads
each row backwards from its true end.

`RNNStack` keeps PyTorch's state layout but batch-first: states are
`[B, n_layers * directions, H]`, index `layer * directions + direction`.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from s2s_jax.layers import cells, recurrence
from s2s_jax.layers.dropout import Dropout
from s2s_jax.layers.init import uniform


class _Recurrence(nn.Module):
    """The body of the scan: one masked recurrent update; weights come in broadcast."""

    cell: str
    reset_after: bool

    @nn.compact
    def __call__(self, carry, inputs, w_hh, b_hh):
        xw, keep = inputs
        new = cells.step(self.cell, xw, carry, w_hh, b_hh, self.reset_after)
        keep = keep[:, None]
        carry = jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, carry)
        out = jnp.where(keep, cells.output(self.cell, new), 0.0)
        return carry, out


_Scan = nn.scan(
    _Recurrence,
    variable_broadcast="params",
    split_rngs={"params": False, "dropout": True},
    in_axes=(1, nn.broadcast, nn.broadcast),
    out_axes=1,
)


class RNNLayer(nn.Module):
    """One direction of one recurrent layer."""

    cell: str
    in_features: int
    hidden: int
    reset_after: bool = True

    def setup(self) -> None:
        g, h = cells.GATES[self.cell], self.hidden
        init = uniform(1.0 / math.sqrt(h))
        self.weight_ih = self.param("weight_ih", init, (g * h, self.in_features))
        self.weight_hh = self.param("weight_hh", init, (g * h, h))
        self.bias_ih = self.param("bias_ih", init, (g * h,))
        self.bias_hh = self.param("bias_hh", init, (g * h,))
        self.recurrence = _Scan(self.cell, self.reset_after)

    def project(self, x: jax.Array) -> jax.Array:
        return x @ self.weight_ih.T + self.bias_ih

    def __call__(self, x: jax.Array, mask: jax.Array, carry: cells.Carry) -> tuple[jax.Array, cells.Carry]:
        """x [B, T, in], mask [B, T] (True on real tokens) -> outputs [B, T, H], final carry.

        The LSTM runs `recurrence.recurrence` (its weight gradient out of the backward loop; where that pays is
        `recurrence.supported`), the other cells the flax `nn.scan` of `_Recurrence`."""
        if recurrence.supported(self.cell, self.reset_after):
            carry, ys = recurrence.recurrence(self.cell, self.project(x), mask, carry, self.weight_hh, self.bias_hh)
            return ys, carry
        carry, ys = self.recurrence(carry, (self.project(x), mask), self.weight_hh, self.bias_hh)
        return ys, carry

    def step(self, x: jax.Array, carry: cells.Carry) -> cells.Carry:
        """One time step for incremental decoding: x [B, in] -> new carry."""
        return cells.step(self.cell, self.project(x), carry, self.weight_hh, self.bias_hh, self.reset_after)


def reverse_within_lengths(x: jax.Array, lengths: jax.Array) -> jax.Array:
    """Reverse each row's first `lengths[b]` steps along axis 1; padding stays in place."""
    t = jnp.arange(x.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def length_mask(lengths: jax.Array, max_len: int) -> jax.Array:
    """[B, T] boolean, True where t < lengths[b]."""
    return jnp.arange(max_len)[None, :] < lengths[:, None]


class RNNStack(nn.Module):
    """Multi-layer, optionally bidirectional RNN with dropout between layers (as torch)."""

    cell: str
    in_features: int
    hidden: int
    n_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    reset_after: bool = True

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def setup(self) -> None:
        layers = []
        for i in range(self.n_layers):
            width = self.in_features if i == 0 else self.hidden * self.directions
            for d in range(self.directions):
                name = f"l{i}" + ("_reverse" if d else "")
                layers.append(RNNLayer(self.cell, width, self.hidden, self.reset_after, name=name))
        self.layers = layers
        self.drop = Dropout(self.dropout)

    def zero_state(self, batch: int, dtype=jnp.float32) -> Any:
        """Initial state of the whole stack, [B, n_layers * directions, H] (a pair for LSTM)."""
        z = jnp.zeros((batch, self.n_layers * self.directions, self.hidden), dtype)
        return (z, z) if self.cell == "lstm" else z

    def __call__(self, x: jax.Array, lengths: jax.Array, initial: Any = None, *, train: bool = False):
        """x [B, T, in], lengths [B] -> (outputs [B, T, H * directions], final state)."""
        if initial is None:
            initial = self.zero_state(x.shape[0], x.dtype)
        mask = length_mask(lengths, x.shape[1])
        finals = []
        for i in range(self.n_layers):
            outs = []
            for d in range(self.directions):
                k = i * self.directions + d
                carry = jax.tree.map(lambda s, k=k: s[:, k], initial)
                if d == 0:
                    ys, carry = self.layers[k](x, mask, carry)
                else:
                    ys, carry = self.layers[k](reverse_within_lengths(x, lengths), mask, carry)
                    ys = reverse_within_lengths(ys, lengths)
                outs.append(ys)
                finals.append(carry)
            x = jnp.concatenate(outs, axis=-1) if len(outs) > 1 else outs[0]
            if i < self.n_layers - 1:
                x = self.drop(x, deterministic=not train)
        final = jax.tree.map(lambda *s: jnp.stack(s, axis=1), *finals)
        return x, final

    def step(self, x: jax.Array, state: Any, *, train: bool = False) -> tuple[jax.Array, Any]:
        """One decoding step of a unidirectional stack: x [B, in] -> (top output [B, H], state)."""
        if self.bidirectional:
            raise ValueError("a bidirectional RNN cannot be run step by step")
        new = []
        for i in range(self.n_layers):
            carry = self.layers[i].step(x, jax.tree.map(lambda s, i=i: s[:, i], state))
            new.append(carry)
            x = cells.output(self.cell, carry)
            if i < self.n_layers - 1:
                x = self.drop(x, deterministic=not train)
        return x, jax.tree.map(lambda *s: jnp.stack(s, axis=1), *new)
