"""The decoders bench/decode.py times: one `Chunk -> (tokens [B, L], lengths [B])` function per engine.

Every engine decodes the chunk bench/decode.py hands it (`s2s_jax.run.translate.Translator.chunks`: rows sorted
by length, padded to a bucket width, each row bounded at a * source length + b with eos forced there), so the
engines do the same work:
- JAX: `Translator.decode_chunk` (jitted `s2s_jax.decoding.search`);
- torch_ref: eager torch driven by the numpy search (`export.search.search` over `export.graphs.numpy_stepper`);
- ORT: `export.runtime.Translator.search` (state kept in onnxruntime, export/ort_step.py), fp32 or int8 graphs;
- CT2: `export.ctranslate2_runtime.CT2Translator.decode_ids` on the rows' source tokens, fp32 or int8.
`forced` (the issue's setting): every row decodes exactly `forced` tokens and none ends early: CTranslate2's
min = max decoding length; for ours the search is given an end id no token has (the vocabulary size), so no
hypothesis ends before max_len. The tokens are then meaningless; only the time counts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
import torch

from export.ctranslate2_runtime import CT2Translator
from export.graphs import numpy_stepper
from export.runtime import Translator as OrtTranslator
from export.search import SearchResult, search, search_top
from s2s_jax.config import ModelConfig
from s2s_jax.decoding.search import decode_source
from s2s_jax.models import build_model
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Chunk, Translator

Decoder = Callable[[Chunk], tuple[np.ndarray, np.ndarray]]  # chunk -> (tokens [B, L], lengths [B])


def _beam(opts: DecodeOptions) -> int:
    return opts.beam if opts.method == "beam" else 1


@functools.lru_cache(maxsize=4)
def _forced_jax(cfg: ModelConfig) -> Callable:
    model = build_model(cfg)

    def decode(params, src, src_lengths, *, max_len, beam, alpha):
        r = decode_source(model, params, src, src_lengths, max_len=max_len, beam=beam, alpha=alpha,
                          eos_id=cfg.tgt_vocab_size)
        return r.tokens[:, 0], r.lengths[:, 0]

    return jax.jit(decode, static_argnames=("max_len", "beam", "alpha"))


def jax_decoder(translator: Translator, opts: DecodeOptions, forced: int | None = None) -> Decoder:
    if forced is None:
        return lambda c: translator.decode_chunk(c, opts)[:2]
    fn = _forced_jax(translator.cfg)

    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        tokens, lengths = fn(translator.params, c.src, c.src_lengths, max_len=forced, beam=_beam(opts),
                             alpha=float(opts.alpha))
        return np.asarray(tokens), np.asarray(lengths)

    return decode


def torch_decoder(tmodel: torch.nn.Module, cfg: ModelConfig, opts: DecodeOptions,
                  forced: int | None = None) -> Decoder:
    eos = cfg.eos_id if forced is None else cfg.tgt_vocab_size

    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        max_len = c.max_len if forced is None else forced
        with torch.inference_mode():
            step, enc, state = numpy_stepper(tmodel, torch.from_numpy(c.src).long(),
                                             torch.from_numpy(c.src_lengths).long(), max_len)
        r = search(step, enc, state, batch=len(c.src), beam=_beam(opts), max_len=max_len, alpha=opts.alpha,
                   row_max_len=c.limits if forced is None else None, bos_id=cfg.bos_id, eos_id=eos, pad_id=cfg.pad_id)
        return r.tokens[:, 0], r.lengths[:, 0]

    return decode


def ort_forced(runtime: OrtTranslator, src: np.ndarray, src_lengths: np.ndarray, *, beam: int, forced: int,
               alpha: float = 0.0) -> SearchResult:
    """The runtime's search with every row decoding exactly `forced` tokens (its end id out of reach)."""
    st = runtime.stepper
    enc, state = st.encode(src[:, : int(src_lengths.max())], src_lengths)  # as search() crops
    return search_top(st.top_step, enc, state, batch=len(src), beam=beam, max_len=forced, bos_id=runtime.bos_id,
                      eos_id=int(runtime.manifest["config"]["tgt_vocab_size"]), pad_id=runtime.pad_id,
                      alpha=alpha, reorder=st.reorder, take=st.take, shared_encoder=st.shared_encoder)


def ort_decoder(runtime: OrtTranslator, opts: DecodeOptions, forced: int | None = None) -> Decoder:
    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        if forced is None:
            r = runtime.search(c.src, c.src_lengths, beam=_beam(opts), max_len=c.max_len, alpha=opts.alpha,
                               row_max_len=c.limits)
        else:
            r = ort_forced(runtime, c.src, c.src_lengths, beam=_beam(opts), forced=forced, alpha=opts.alpha)
        return r.tokens[:, 0], r.lengths[:, 0]

    return decode


def ct2_decoder(ct2: CT2Translator, source_tokens: list[list[str]], opts: DecodeOptions,
                forced: int | None = None) -> Decoder:
    """`source_tokens[i]`: the tokens of input i (the chunk's rows index the inputs)."""

    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        batch = [source_tokens[i] for i in c.rows]
        ids = ct2.decode_ids(batch, beam=_beam(opts), alpha=opts.alpha, limits=c.limits, forced_len=forced)
        lengths = np.array([len(h[0]) for h in ids])
        tokens = np.zeros((len(ids), max(lengths)), np.int32)
        for j, h in enumerate(ids):
            tokens[j, : lengths[j]] = h[0]
        return tokens, lengths

    return decode
