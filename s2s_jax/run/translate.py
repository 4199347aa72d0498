"""Translate text with a trained model: greedy, beam search or sampling, batched, with jit reuse.

`Translator` is what `translate` and `evaluate` use. Inputs are cut into chunks
of `batch_size` rows (the last padded with copies of its first row, which are
dropped), each chunk's source padded to a bucket width, so a long file reuses a
few compiled functions. Rows never influence each other, so a sentence's output
does not depend on its chunk.

Every method is `s2s_jax.decoding.search` (through `decode_source`): greedy is beam 1,
sampling is beam 1 at a temperature, so `beam=1` is greedy here as in the ONNX runtime,
and every method reports the same score, the length-penalised log-prob of its output.

Length: when the task defines `decode_limit(src_lengths)` (a * len + b for text),
each row stops there (eos forced, as in beam search); the static bound is that of
the chunk's padded width, capped by the model's positions. Tasks without it
(addition) decode up to their `max_decode_len`, greedy exactly as `make_greedy_decoder`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.data.batching import bucket_width
from s2s_jax.decoding.search import decode_source
from s2s_jax.errors import UserError
from s2s_jax.models import build_model, target_limit
from s2s_jax.run.config import DecodeOptions

GREEDY = DecodeOptions()  # the default: beam 1


@functools.lru_cache(maxsize=8)
def _decoder(cfg: ModelConfig) -> Callable:
    """`search` over `cfg`'s model, jitted, shared by every Translator of that config (compile once per shape and
    static options). Returns (tokens [B, K, L], lengths [B, K], scores [B, K]), best first (K = beam)."""
    model = build_model(cfg)

    def decode(params, src, src_lengths, limits, key, *, max_len, beam, alpha, temperature, top_k):
        r = decode_source(model, params, src, src_lengths, max_len=max_len, beam=beam, alpha=alpha,
                          row_max_len=limits, temperature=temperature, top_k=top_k, key=key)
        return r.tokens, r.lengths, r.scores

    return jax.jit(decode, static_argnames=("max_len", "beam", "alpha", "temperature", "top_k"))


class Chunk(NamedTuple):
    """One batch of `Translator.chunks`: `rows` index the input (the first `real` are distinct), `start` is the
    chunk's position in length order (it seeds sampling)."""

    start: int
    rows: np.ndarray
    real: int
    src: np.ndarray
    src_lengths: np.ndarray
    max_len: int
    limits: np.ndarray | None  # None: the task has no per-row rule (addition)


class Translator:
    """Decode with (cfg, params) and a task's text conversion; one compiled function per (method, shape)."""

    def __init__(self, cfg: ModelConfig, params: Any, task: Any, batch_size: int = 64) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be >= 1")
        self.cfg, self.params, self.task, self.batch_size = cfg, params, task, batch_size
        self._decode = _decoder(cfg)

    def _limits(self, width: int, src_lengths: np.ndarray) -> tuple[int, np.ndarray | None]:
        """(static max_len for a chunk of this width, per-row limits or None when the task has no such rule)."""
        cap = target_limit(self.cfg)
        if not hasattr(self.task, "decode_limit"):
            static = int(self.task.max_decode_len)
            return (static if cap is None else min(static, cap)), None
        static = int(self.task.decode_limit(np.array([width]))[0])
        if cap is not None:
            static = min(static, cap)
        return static, np.minimum(self.task.decode_limit(src_lengths), static).astype(np.int32)

    def _width(self, src_lengths: np.ndarray, full: int) -> int:
        buckets = getattr(self.task, "buckets", None)
        width = min(full, bucket_width(int(src_lengths.max()), buckets)) if buckets else full
        # A learned position table (the same one for source and target) may be shorter than the bucket: pad only
        # as far as it reaches, so a source that fits the model is never refused for its padding.
        limit, longest = target_limit(self.cfg), int(src_lengths.max())
        if limit is not None and longest > limit:
            raise UserError(f"an input has {longest} source tokens; the {self.cfg.family} model has {limit} "
                            "positions (max_len): shorten or split it")
        if limit is not None and limit < width:
            width = limit
        return width

    def chunks(self, src: np.ndarray, src_lengths: np.ndarray) -> Iterator[Chunk]:
        """The batches `decode_ids` decodes: rows sorted by length (narrower padding), `batch_size` at a time
        (the last one filled up with copies of its first row), each cut to its width, with its static max_len
        and per-row limits. Public so that other decoders (bench/decode.py) can be fed exactly the same."""
        src, src_lengths = np.asarray(src), np.asarray(src_lengths)
        n = len(src)
        order = np.argsort(-src_lengths, kind="stable")
        # a power of two below batch_size: streamed inputs arrive a few at a time, and each row count compiles
        chunk = min(self.batch_size, 1 << (n - 1).bit_length())
        for start in range(0, n, chunk):
            rows = order[start : start + chunk]
            real = len(rows)
            rows = np.concatenate([rows, np.repeat(rows[:1], chunk - real)])
            sl = src_lengths[rows]
            width = self._width(sl, src.shape[1])
            max_len, limits = self._limits(width, sl)
            yield Chunk(start, rows, real, np.ascontiguousarray(src[rows, :width]), sl, max_len, limits)

    def check(self, opts: DecodeOptions) -> None:
        """Options this model cannot decode with, refused before any input is read."""
        vocab = self.cfg.tgt_vocab_size
        if opts.beam > vocab:  # more beams than first tokens to start them from (fairseq refuses it too)
            raise UserError(f"beam={opts.beam} is more than the {vocab} tokens of the target vocabulary; give at "
                            f"most {vocab}")
        if opts.sample and opts.top_k > vocab:
            raise UserError(f"top_k={opts.top_k} is more than the {vocab} tokens of the target vocabulary; give at "
                            f"most {vocab} (0: all)")

    def decode_chunk(self, c: Chunk, opts: DecodeOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One chunk of `chunks`: (tokens [B, L], lengths [B] through eos, scores [B]) of the best hypothesis of
        each of its rows (`decode_chunk_beams` gives them all)."""
        tokens, lengths, scores = self.decode_chunk_beams(c, opts)
        return tokens[:, 0], lengths[:, 0], scores[:, 0]

    def decode_chunk_beams(self, c: Chunk, opts: DecodeOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens [B, K, L], lengths [B, K], scores [B, K]) of a chunk, best first (K = opts.beam). Greedy and
        sampling are `search` at beam 1 (greedy: temperature 0), beam search at `opts.beam`."""
        sample, beam = opts.sample, opts.beam
        key = jax.random.fold_in(jax.random.key(opts.seed), c.start)
        out = self._decode(self.params, c.src, c.src_lengths, c.limits, key, max_len=c.max_len, beam=beam,
                           alpha=float(opts.alpha), temperature=float(opts.temperature) if sample else 0.0,
                           top_k=int(opts.top_k) if sample else 0)
        tokens, lengths, scores = (np.asarray(x) for x in out)
        return tokens, lengths, scores

    def decode_ids(
        self, src: np.ndarray, src_lengths: np.ndarray, opts: DecodeOptions = GREEDY,
        progress: Callable[[int], Any] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Per row: output ids through eos (a list of int arrays), and its search score (every method: the sum of
        its tokens' log-probs over the length penalty ((5 + length) / 6) ** alpha). `progress(n)` is called with
        the number of rows each chunk finished (a progress bar's update)."""
        self.check(opts)
        outputs: list[np.ndarray | None] = [None] * len(src)
        scores = np.zeros(len(src), np.float32)
        for row, tokens, lengths, row_scores in self._rows(src, src_lengths, opts, progress):
            outputs[row], scores[row] = tokens[0, : lengths[0]], row_scores[0]
        return outputs, scores  # type: ignore[return-value]

    def _rows(self, src: np.ndarray, src_lengths: np.ndarray, opts: DecodeOptions,
              progress: Callable[[int], Any] | None = None) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """(input row, tokens [K, L], lengths [K], scores [K]) of every real row, chunk by chunk, best first."""
        for c in self.chunks(src, src_lengths):
            tokens, lengths, scores = self.decode_chunk_beams(c, opts)
            for j in range(c.real):
                yield int(c.rows[j]), tokens[j], lengths[j], scores[j]
            if progress is not None:
                progress(c.real)

    def hypotheses(self, texts: Sequence[str], opts: DecodeOptions = GREEDY,
                   n_best: int = 1) -> list[list[tuple[str, float]]]:
        """The `n_best` best (text, score) of each input, best first (n_best <= beam); the scores are the search's,
        as `translate --n-best/--format jsonl` and the ONNX runtime print them."""
        if not 1 <= n_best <= opts.beam:
            raise UserError(f"n_best={n_best} must be between 1 and the beam ({opts.beam})")
        self.check(opts)
        src, src_lengths = self.task.encode_inputs(list(texts))
        out: list[list[tuple[str, float]]] = [[] for _ in texts]
        for row, tokens, lengths, scores in self._rows(src, src_lengths, opts):
            out[row] = [(self.task.decode_output(tokens[k, : lengths[k]]), float(scores[k])) for k in range(n_best)]
        return out

    def translate(self, texts: Sequence[str], opts: DecodeOptions = GREEDY,
                  progress: Callable[[int], Any] | None = None) -> list[str]:
        """Translations of `texts`, in order; every input is checked before anything is decoded."""
        if not texts:
            return []
        src, src_lengths = self.task.encode_inputs(list(texts))
        ids, _ = self.decode_ids(src, src_lengths, opts, progress)
        return [self.task.decode_output(row) for row in ids]

