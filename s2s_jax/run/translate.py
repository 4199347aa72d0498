"""Translate text with a trained model: greedy, beam search or sampling, batched, with jit reuse.

`Translator` is what `translate` and `evaluate` use. Inputs are cut into chunks
of `batch_size` rows (the last padded with copies of its first row, which are
dropped), each chunk's source padded to a bucket width, so a long file reuses a
few compiled functions. Rows never influence each other, so a sentence's output
does not depend on its chunk.

Length: when the task defines `decode_limit(src_lengths)` (a * len + b for text),
each row stops there (eos forced, as in beam search); the static bound is that of
the chunk's padded width, capped by the model's positions. Tasks without it
(addition) decode up to their `max_decode_len`, greedy exactly as greedy.py.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.data.batching import bucket_width
from s2s_jax.decoding.beam import beam_search
from s2s_jax.decoding.sampling import sample_decode
from s2s_jax.errors import UserError
from s2s_jax.models import build_model, target_limit

METHODS = ("greedy", "beam", "sample")


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """method: greedy | beam | sample. alpha: GNMT length penalty for beam search. temperature/top_k/seed: sampling."""

    method: str = "greedy"
    beam: int = 5
    alpha: float = 0.0
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"decoding method {self.method!r} is not one of {METHODS}")
        if self.beam < 1 or self.temperature <= 0 or self.top_k < 0:
            raise UserError(f"need beam >= 1, temperature > 0, top_k >= 0 (got {self.beam}, {self.temperature}, "
                            f"{self.top_k})")


@functools.lru_cache(maxsize=8)
def _decoders(cfg: ModelConfig) -> tuple[Callable, Callable]:
    """(beam, sample) jitted for `cfg`'s model, shared by every Translator of that config (compile once)."""
    model = build_model(cfg)

    def beam_fn(params, src, src_lengths, limits, *, max_len, beam, alpha):
        enc = model.apply({"params": params}, src, src_lengths, method="encode")
        r = beam_search(model, params, enc, beam=beam, max_len=max_len, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                        pad_id=cfg.pad_id, alpha=alpha, row_max_len=limits)
        return r.tokens[:, 0], r.lengths[:, 0], r.scores[:, 0]

    def sample_fn(params, src, src_lengths, limits, key, *, max_len, temperature, top_k):
        tokens, lengths = sample_decode(model, params, src, src_lengths, key, max_len=max_len, bos_id=cfg.bos_id,
                                        eos_id=cfg.eos_id, pad_id=cfg.pad_id, temperature=temperature, top_k=top_k,
                                        row_max_len=limits)
        return tokens, lengths, jnp.zeros(tokens.shape[0], jnp.float32)

    return (jax.jit(beam_fn, static_argnames=("max_len", "beam", "alpha")),
            jax.jit(sample_fn, static_argnames=("max_len", "temperature", "top_k")))


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
        self._beam, self._sample = _decoders(cfg)

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
        chunk = min(self.batch_size, n)
        for start in range(0, n, chunk):
            rows = order[start : start + chunk]
            real = len(rows)
            rows = np.concatenate([rows, np.repeat(rows[:1], chunk - real)])
            sl = src_lengths[rows]
            width = self._width(sl, src.shape[1])
            max_len, limits = self._limits(width, sl)
            yield Chunk(start, rows, real, np.ascontiguousarray(src[rows, :width]), sl, max_len, limits)

    def decode_chunk(self, c: Chunk, opts: DecodeOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One chunk of `chunks`: (tokens [B, L], lengths [B] through eos, scores [B]) for all its rows."""
        if opts.method == "beam":
            out = self._beam(self.params, c.src, c.src_lengths, c.limits, max_len=c.max_len, beam=opts.beam,
                             alpha=opts.alpha)
        else:
            temperature = 0.0 if opts.method == "greedy" else opts.temperature
            key = jax.random.fold_in(jax.random.key(opts.seed), c.start)
            out = self._sample(self.params, c.src, c.src_lengths, c.limits, key, max_len=c.max_len,
                               temperature=temperature, top_k=opts.top_k)
        tokens, lengths, scores = (np.asarray(x) for x in out)
        return tokens, lengths, scores

    def decode_ids(
        self, src: np.ndarray, src_lengths: np.ndarray, opts: DecodeOptions = DecodeOptions()
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Per row: output ids through eos (a list of int arrays), and the search score (beam; 0 otherwise)."""
        outputs: list[np.ndarray | None] = [None] * len(src)
        scores = np.zeros(len(src), np.float32)
        for c in self.chunks(src, src_lengths):
            t, length, sc = self.decode_chunk(c, opts)
            for j in range(c.real):
                outputs[c.rows[j]] = t[j, : length[j]]
                scores[c.rows[j]] = sc[j]
        return outputs, scores  # type: ignore[return-value]

    def translate(self, texts: Sequence[str], opts: DecodeOptions = DecodeOptions()) -> list[str]:
        """Translations of `texts`, in order; every input is checked before anything is decoded."""
        if not texts:
            return []
        src, src_lengths = self.task.encode_inputs(list(texts))
        ids, _ = self.decode_ids(src, src_lengths, opts)
        return [self.task.decode_output(row) for row in ids]

