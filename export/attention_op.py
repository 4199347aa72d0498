"""The cache-state step's self-attention as onnxruntime's fused GroupQueryAttention, writing the cache in place.

Why: exported from torch_ref's `cached_attention`, one self-attention of a decoder step is some twenty small
kernels (split heads, scale, two score matmuls, mask, concat, softmax, split, two value products), and the
runtime then writes the new position's keys and values into its buffers in numpy. For 320 rows (batch 64, beam
5) a one-layer graph of such kernels took 5.5-8.7 ms where onnxruntime's contrib op
`com.microsoft.GroupQueryAttention` takes 1.0-1.5 ms for the same result (within 1e-6); in the exported step
the three layers' attentions went from 60 kernels to 3 (bench/RESULTS.md, 2026-12-02). With
its present key/value outputs bound to the same memory as its past inputs (the runtime's numpy buffers of
export/cache.py), the op also writes the new position at `length` itself: the step returns no rows.

`cached_attention` runs torch_ref's `cached_attention` in eager torch, so a swapped model computes what torch_ref
does, and under `torch.onnx.export` becomes the contrib node (`torch.onnx.ops.symbolic_multi_out`; heads as
num_heads = kv_num_heads: plain multi-head attention, causal over the buffer's first `length` positions plus
the new one, which is what `valid` says). `expose_presents` then makes the node's present outputs graph
outputs named after the buffers they alias (`present.<state name>`), which the runtime binds to them.
`swap_cached_attention(model)` puts the op into every attention module of a torch_ref model that has the hook
(`module.cached_attention`) and heads the CPU kernel takes (a multiple of 8 dimensions); other models export
the step's rows for the runtime to write (export version 3's way).
"""

from __future__ import annotations

import math

import onnx
import torch
from torch import nn

from torch_ref.models.transformer import cached_attention as reference_attention

DOMAIN, NODE = "com.microsoft", "GroupQueryAttention"
PRESENT = "present."  # graph output `present.<past input>`: the buffer the node wrote its new position into


def cached_attention(q: torch.Tensor, k_buf: torch.Tensor, v_buf: torch.Tensor, valid: torch.Tensor,
                     k_new: torch.Tensor, v_new: torch.Tensor) -> torch.Tensor:
    """torch_ref's `cached_attention` (q, k_new, v_new [B, h, 1, d]; buffers [B, h, C, d]; valid [1, 1, 1, C]):
    its own math in eager torch, one GroupQueryAttention node under `torch.onnx.export`, with the buffers as the
    past key/value (BNSH) and `length`, the count of valid positions, as every row's past length."""
    if not torch.onnx.is_in_onnx_export():
        return reference_attention(q, k_buf, v_buf, valid, k_new, v_new)
    batch, heads, _, head_dim = q.shape

    def rows(x: torch.Tensor) -> torch.Tensor:  # [B, h, 1, d] -> [B, 1, h * d], the op's query/key/value layout
        return x.transpose(1, 2).reshape(batch, 1, heads * head_dim)

    length = valid.sum(dtype=torch.int32)
    seqlens = length.expand(batch)  # per row: the positions before the new one
    total = (length + 1).reshape(1)
    out, _, _ = torch.onnx.ops.symbolic_multi_out(
        f"{DOMAIN}::{NODE}", (rows(q), rows(k_new), rows(v_new), k_buf, v_buf, seqlens, total),
        {"num_heads": heads, "kv_num_heads": heads, "scale": 1.0 / math.sqrt(head_dim)},
        dtypes=(q.dtype, k_buf.dtype, v_buf.dtype), shapes=((batch, 1, heads * head_dim), k_buf.shape, v_buf.shape),
        version=1)
    return out.reshape(batch, 1, heads, head_dim).transpose(1, 2)


def supported(head_dim: int) -> bool:
    """onnxruntime's CPU kernel takes heads of a multiple of 8 dimensions (and refuses others when run)."""
    return head_dim % 8 == 0


def swap_cached_attention(model: nn.Module) -> int:
    """Put the fused attention into every module with torch_ref's hook whose heads the op supports; how many
    were swapped (0: the step returns its rows for the runtime to write, export version 3's way)."""
    swapped = 0
    for module in model.modules():
        if getattr(module, "cached_attention", None) is reference_attention and supported(module.head_dim):
            module.cached_attention = cached_attention
            swapped += 1
    return swapped


def expose_presents(proto: onnx.ModelProto, buffers: list[str]) -> dict[str, str]:
    """Name each fused node's present key/value after the buffer input it aliases and make them graph outputs;
    {buffer: present output}. Every buffer must be the past of exactly one node (else the export is wrong)."""
    graph = proto.graph
    types = {value.name: value.type for value in graph.input}
    presents: dict[str, str] = {}
    for node in graph.node:
        if node.op_type != NODE or node.domain != DOMAIN:
            continue
        for slot, past in ((1, node.input[3]), (2, node.input[4])):
            if past not in buffers or past in presents:
                raise ValueError(f"{NODE} node {node.name!r} reads past {past!r}, not one buffer of its own")
            while len(node.output) <= slot:
                node.output.append("")
            node.output[slot] = presents[past] = PRESENT + past
            output = graph.output.add()
            output.name = presents[past]
            output.type.CopyFrom(types[past])
    missing = sorted(set(buffers) - set(presents))
    if missing:
        raise ValueError(f"no {NODE} node writes the cache buffers {missing}")
    return {name: presents[name] for name in buffers}
