"""ONNX export (torch side) and the onnxruntime translator (numpy side).

Kept import-free on purpose: `python -m export.runtime` imports this package
first, and the runtime must work where neither torch nor jax is installed.
Import the submodules you need:
- `export.onnx_export`: workdir -> `encoder.onnx`, `decoder_step.onnx`, `model.json` (needs torch)
- `export.runtime`: `Translator` over onnxruntime sessions (numpy + onnxruntime only)
- `export.search`: `search(step, enc, state, ...)`, the numpy twin of `s2s_jax.decoding.search`
  (greedy and beam search), shared by the runtime, the tests and the torch_ref benchmarks
- `export.quantize`: int8 dynamic quantization of an export
- `export.step_heads`: the search head and the state reorder graph added to the exported step (needs onnx)
- `export.ort_step`: the decoder step with its state kept in onnxruntime (OrtValues, IOBinding; numpy + onnxruntime)
- `export.runtime_cli`: `python -m export.runtime`'s command line
- `export.ctranslate2_export` / `export.ctranslate2_runtime`: a Transformer as a CTranslate2 model, and its text
  front end (optional: needs ctranslate2)
"""
