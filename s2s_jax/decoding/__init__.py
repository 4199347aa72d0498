"""Decoding: one search contract, `search.search(step, enc, state, ...)` (greedy, sampling, beam search).

Outside this package use `search.search` with `search.model_step` / `search.decode_source` (a Flax model's
step and hooks), `greedy.make_greedy_decoder` (training's validation) and `attention_weights`; `beam.py`,
`sampling.py`, `topk.py` and `common.py` are the algorithms behind `search`.
"""
