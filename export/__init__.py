"""ONNX export (torch side) and the onnxruntime translator (numpy side).

Kept import-free on purpose: `python -m export.runtime` imports this package
first, and the runtime must work where neither torch nor jax is installed.
Import the submodules you need:
- `export.onnx_export`: workdir -> `encoder.onnx`, `decoder_step.onnx`, `model.json` (needs torch)
- `export.runtime`: `Translator` over onnxruntime sessions (numpy + onnxruntime only)
- `export.search`: `search(step, enc, state, ...)`, the numpy twin of `s2s_jax.decoding.search`
  (greedy and beam search), shared by the runtime, the tests and the torch_ref benchmarks
- `export.quantize`: int8 dynamic quantization of an export
"""
