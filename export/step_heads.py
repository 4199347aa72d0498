"""What the ONNX runtime needs around the exported decoder step, added as plain ONNX: the search head and the
state reorder graph.

Why: the numpy search (export/search.py) used to take the whole [rows, V] log-probs out of onnxruntime at every
step, mask them, add the beam scores and find the top candidates in numpy (12 ms a step at batch 64, beam 5,
vocab 5,921, measured with a dummy step), and to gather every state tensor through numpy for the beam reorder.
Both now happen inside onnxruntime:

- `add_search_head` appends to the step graph the search's own arithmetic, row by row: the row's running
  score added (`live`), then the `k` best candidates of each row (`TopK`, ties to the lower token id, as
  `export.search.top_k`), and each row's eos candidate (`eos_values`), from which the runtime builds the
  candidates of rows whose last step forces eos (export/ort_step.py; a mask over [rows, V] in the graph cost
  more than the step's output layer: 18 ms a step at batch 64, beam 5, profiled). The search merges the rows'
  candidates per sentence; the top 2K of a sentence's K x V candidates are always among its rows' top 2K, so
  the result is the one of the full top-k (export/search.py says why, exactly). `log_probs` stays an output
  for tests and the first beam step.
- `reorder_graph` is one Gather per state tensor along the batch axis: the state stays in onnxruntime's buffers
  (OrtValues) while beams are repeated and reordered. It has no weights and serves the fp32 and int8 steps alike.

Needs onnx (the export side); the runtime only loads the files.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LIVE, K = "live", "k"
TOP_VALUES, TOP_INDICES, EOS_VALUES = "top_values", "top_indices", "eos_values"
ROWS = "rows"
REORDERED = "reordered."


def _opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def add_search_head(proto: onnx.ModelProto, *, log_probs: str, eos_id: int) -> None:
    """Add inputs live [N] float, k [1] int64 and outputs top_values [N, k], top_indices [N, k] (int64) and
    eos_values [N, 1] to the step graph in `proto`: TopK over live + log_probs, and its eos column."""
    g = proto.graph
    batch = next(o for o in g.output if o.name == log_probs).type.tensor_type.shape.dim[0]
    rows = batch.dim_param or "batch"
    g.input.extend([helper.make_tensor_value_info(LIVE, TensorProto.FLOAT, [rows]),
                    helper.make_tensor_value_info(K, TensorProto.INT64, [1])])
    g.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "head.axis1"),
                          numpy_helper.from_array(np.array([eos_id], np.int64), "head.eos")])
    g.node.extend([
        helper.make_node("Unsqueeze", [LIVE, "head.axis1"], ["head.live2"]),
        helper.make_node("Add", ["head.live2", log_probs], ["head.candidates"]),
        helper.make_node("TopK", ["head.candidates", K], [TOP_VALUES, TOP_INDICES], axis=-1, largest=1, sorted=1),
        helper.make_node("Gather", ["head.candidates", "head.eos"], [EOS_VALUES], axis=1),
    ])
    g.output.extend([helper.make_tensor_value_info(TOP_VALUES, TensorProto.FLOAT, [rows, "k"]),
                     helper.make_tensor_value_info(TOP_INDICES, TensorProto.INT64, [rows, "k"]),
                     helper.make_tensor_value_info(EOS_VALUES, TensorProto.FLOAT, [rows, 1])])


def reorder_graph(step: onnx.ModelProto, state_names: list[str]) -> onnx.ModelProto:
    """rows [M] int64 + every state tensor of `step` -> `reordered.<name>` = the tensor's rows `rows` (axis 0)."""
    by_name = {i.name: i for i in step.graph.input}
    inputs = [helper.make_tensor_value_info(ROWS, TensorProto.INT64, ["rows"])]
    outputs, nodes = [], []
    for name in state_names:
        value = by_name[name]
        inputs.append(value)
        tensor = value.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
        outputs.append(helper.make_tensor_value_info(REORDERED + name, tensor.elem_type, ["rows", *dims[1:]]))
        nodes.append(helper.make_node("Gather", [name, ROWS], [REORDERED + name], axis=0))
    graph = helper.make_graph(nodes, "state_reorder", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _opset(step))],
                              producer_name="s2s-jax")
    model.ir_version = step.ir_version
    return model
