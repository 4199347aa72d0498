"""int8 dynamic quantization of an export (`--quantize int8`), next to the fp32 graphs.

onnxruntime's `quantize_dynamic` stores weights of MatMul/Gemm/Gather (and LSTM,
as DynamicQuantizeLSTM) as int8 and quantizes activations on the fly; ONNX
GRU/RNN nodes stay fp32 (onnxruntime has no quantized kernel for them), so the
gain for GRU models is the embeddings and the output layer. The result is
judged by task metrics (BLEU, exact match), not allclose; the fp32 graphs stay
in place and `Translator.load(out, int8=True)` picks these.
"""

from __future__ import annotations

import collections
import json
import tempfile
from pathlib import Path
from typing import Any

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

MANIFEST_FILE = "model.json"
GRAPHS = ("encoder", "decoder_step")


def _int8_name(file: str) -> str:
    return file.removesuffix(".onnx") + ".int8.onnx"


def _quantized_ops(path: Path) -> dict[str, int]:
    """Count of nodes that work on int8 data (DynamicQuantizeLinear, MatMulInteger, ...)."""
    ops = collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)
    return {k: v for k, v in sorted(ops.items()) if "Quant" in k or "Integer" in k}


def quantize_export(out: str | Path) -> dict[str, Any]:
    """Write `<graph>.int8.onnx` next to both graphs in `out`; record them in model.json and return the record."""
    path = Path(out)
    manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
    record: dict[str, Any] = {"bytes_fp32": 0, "bytes_int8": 0, "quantized_ops": {}}
    for key in GRAPHS:
        src = path / manifest[key]["file"]
        dst = path / _int8_name(src.name)
        # The quantizer rewrites nodes and then re-runs shape inference against the exporter's
        # value_info annotations, which no longer fit (Gemm weights change shape): drop them first.
        model = onnx.load(str(src))
        del model.graph.value_info[:]
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / src.name
            onnx.save_model(model, plain)
            # DefaultTensorType: onnx's shape inference cannot type the outputs of onnxruntime's contrib ops (the
            # Transformers' fused attention, export/attention_op.py); every float tensor here is float32
            quantize_dynamic(plain, dst, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        onnx.checker.check_model(str(dst), full_check=True)
        record[key] = dst.name
        record["bytes_fp32"] += src.stat().st_size
        record["bytes_int8"] += dst.stat().st_size
        for op, n in _quantized_ops(dst).items():
            record["quantized_ops"][op] = record["quantized_ops"].get(op, 0) + n
    manifest["int8"] = record
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return record
