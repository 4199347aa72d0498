"""Translate text with a trained model: greedy, beam search or sampling, batched, with jit reuse.

`Translator` is what `translate` and `evaluate` use. Inputs are cut into chunks
of `batch_size` rows (the last padded with copies of its first row, which are
dropped), each chunk's source padded to a bucket width, so a long file reuses a
few compiled functions. Rows never influence each other, so a sentence's output
does not depend on its chunk.

Every method is `s2s_jax.decoding.search` (through `decode_source`): greedy is beam 1,
sampling is beam 1 at a temperature, so `beam=1` is greedy here as in the ONNX runtime,
and every method reports the same score, the length-penalised log-prob of its output.

Beyond the method: n-gram blocking (`no_repeat_ngram`), top-p sampling, target prefixes
(`prefixes`: the first output tokens of a sentence, forced), per-token scores and hard
alignments (`details`), unknown-word replacement, and ensembles (`ensemble`: more
(config, params) decoded with the first, their probabilities averaged each step;
`decoding/ensemble.py`). Sampling draws sentence b with a key from the seed and b's own
source ids, so a sentence's sample does not depend on its chunk either.

Length: when the task defines `decode_limit(src_lengths)` (a * len + b for text),
each row stops there (eos forced, as in beam search); the static bound is that of
the chunk's padded width, capped by the model's positions. Tasks without it
(addition) decode up to their `max_decode_len`, greedy exactly as `make_greedy_decoder`.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from s2s_jax.config import ModelConfig
from s2s_jax.data.batching import bucket_width
from s2s_jax.decoding.ensemble import decode_ensemble
from s2s_jax.decoding.search import decode_source
from s2s_jax.errors import UserError
from s2s_jax.models import build_model, target_limit
from s2s_jax.run.config import DecodeOptions

GREEDY = DecodeOptions()  # the default: beam 1
# A chunk's source width: its longest row rounded up to a multiple of this, within the training bucket. The
# encoder's work and the chunk's static max_len (a * width + b: the KV cache and the loop) follow the width, and
# the training buckets (16, 24, 48 for Multi30k) padded test_2016's chunks of 64 sentences, 11.6 tokens on
# average, to 19 (bench/decode.py, batch 64, forced 14 tokens, JAX/CTranslate2 side by side: 0.82x -> 0.98x
# greedy, 0.72x -> 0.81x beam 5; a step of 8 gave 0.83x / 0.75x). The price is compiled shapes, up to 12 widths
# for a 48-token bucket instead of 3 (the CLI keeps them in its persistent compilation cache).
WIDTH_STEP = 4
STATIC = ("max_len", "beam", "alpha", "temperature", "top_k", "top_p", "no_repeat_ngram")


def chunk_width(longest: int, full: int, buckets: Sequence[int] | None) -> int:
    """A chunk's source width before the model's position limit: its longest row rounded up to WIDTH_STEP,
    within its training bucket and the padded width `full`; `full` itself for a task without buckets."""
    if not buckets:
        return full
    return min(full, bucket_width(longest, buckets), -(-longest // WIDTH_STEP) * WIDTH_STEP)


@functools.lru_cache(maxsize=8)
def _decoder(cfgs: tuple[ModelConfig, ...]) -> Callable:
    """`search` over the models of `cfgs` (one, or an ensemble), jitted, shared by every Translator of those
    configs (compile once per shape and static options). Returns (tokens [B, K, L], lengths [B, K], scores [B, K],
    token_scores [B, K, L]), best first (K = beam)."""
    models = [build_model(c) for c in cfgs]

    def decode(params, src, src_lengths, limits, keys, prefix, prefix_lengths, **static):
        kw = dict(row_max_len=limits, key=keys, prefix=prefix, prefix_lengths=prefix_lengths, **static)
        if len(models) == 1:
            r = decode_source(models[0], params[0], src, src_lengths, **kw)
        else:
            r = decode_ensemble(list(zip(models, params, strict=True)), src, src_lengths, **kw)
        return r.tokens, r.lengths, r.scores, r.token_scores

    return jax.jit(decode, static_argnames=STATIC)


def sentence_seeds(src: np.ndarray, src_lengths: np.ndarray) -> np.ndarray:
    """[B] uint32: each row's crc32 of its source ids (int32, through its length), what sampling keys a sentence
    by (with --seed) in s2s-jax and in the ONNX runtime alike, so its draws follow the sentence, not its batch."""
    return np.array([zlib.crc32(np.asarray(r[:n], np.int32).tobytes()) for r, n in zip(src, src_lengths, strict=True)],
                    np.uint32)


class Hypothesis(NamedTuple):
    """One output with what `--print-scores` shows: its search score, its tokens through eos (vocabulary
    strings) with each one's log-prob, and, when asked for, each token's source position (argmax attention)."""

    text: str
    score: float
    tokens: list[str]
    token_scores: list[float]
    alignment: list[int] | None


class Chunk(NamedTuple):
    """One batch of `Translator.chunks`: `rows` index the input (the first `real` are distinct), `start` is the
    chunk's position in length order."""

    start: int
    rows: np.ndarray
    real: int
    src: np.ndarray
    src_lengths: np.ndarray
    max_len: int
    limits: np.ndarray | None  # None: the task has no per-row rule (addition)
    prefix: np.ndarray | None = None  # [B, P] forced first output tokens, P a power of two
    prefix_lengths: np.ndarray | None = None


def _prefix_arrays(prefixes: Sequence[np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(prefixes[r]) for r in rows], np.int32)
    width = 1 << max(int(lengths.max()) - 1, 0).bit_length()  # powers of two: few compiled shapes
    out = np.zeros((len(rows), width), np.int32)
    for j, r in enumerate(rows):
        out[j, : lengths[j]] = prefixes[r]
    return out, lengths


class Translator:
    """Decode with (cfg, params) and a task's text conversion; one compiled function per (method, shape).

    ensemble: more (cfg, params) decoded together with the first (`ensemble_members` checks that they fit)."""

    def __init__(self, cfg: ModelConfig, params: Any, task: Any, batch_size: int = 64,
                 ensemble: Sequence[tuple[ModelConfig, Any]] = ()) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size={batch_size} must be >= 1")
        self.cfg, self.params, self.task, self.batch_size = cfg, params, task, batch_size
        self.members = [(cfg, params), *ensemble]
        self._decode = _decoder(tuple(c for c, _ in self.members))
        caps = [c for c in (target_limit(m) for m, _ in self.members) if c is not None]
        self.cap = min(caps) if caps else None
        self._weights: Callable | None = None

    def _limits(self, width: int, src_lengths: np.ndarray) -> tuple[int, np.ndarray | None]:
        """(static max_len for a chunk of this width, per-row limits or None when the task has no such rule)."""
        cap = self.cap
        if not hasattr(self.task, "decode_limit"):
            static = int(self.task.max_decode_len)
            return (static if cap is None else min(static, cap)), None
        static = int(self.task.decode_limit(np.array([width]))[0])
        if cap is not None:
            static = min(static, cap)
        return static, np.minimum(self.task.decode_limit(src_lengths), static).astype(np.int32)

    def _width(self, src_lengths: np.ndarray, full: int) -> int:
        longest = int(src_lengths.max())
        width = chunk_width(longest, full, getattr(self.task, "buckets", None))
        # A learned position table (the same one for source and target) may be shorter than the bucket: pad only
        # as far as it reaches, so a source that fits the model is never refused for its padding.
        limit = self.cap
        if limit is not None and longest > limit:
            raise UserError(f"an input has {longest} source tokens; the {self.cfg.family} model has {limit} "
                            "positions (max_len): shorten or split it")
        if limit is not None and limit < width:
            width = limit
        return width

    def chunks(self, src: np.ndarray, src_lengths: np.ndarray,
               prefixes: Sequence[np.ndarray] | None = None) -> Iterator[Chunk]:
        """The batches `decode_ids` decodes: rows sorted by length (narrower padding), `batch_size` at a time
        (the last one filled up with copies of its first row), each cut to its width, with its static max_len
        and per-row limits (room made for each row's prefix and eos). Public so that other decoders
        (bench/decode.py) can be fed exactly the same."""
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
            prefix = prefix_lengths = None
            if prefixes is not None:
                prefix, prefix_lengths = _prefix_arrays(prefixes, rows)
                need = int(prefix_lengths.max()) + 1  # the prefix, then at least eos
                if self.cap is not None and need > self.cap:
                    raise UserError(f"a prefix of {need - 1} tokens leaves no room in the {self.cfg.family} model's "
                                    f"{self.cap} positions (max_len); shorten it")
                max_len = max(max_len, need)
                if limits is not None:
                    limits = np.maximum(limits, prefix_lengths + 1).astype(np.int32)
            yield Chunk(start, rows, real, np.ascontiguousarray(src[rows, :width]), sl, max_len, limits, prefix,
                        prefix_lengths)

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
        tokens, lengths, scores, _ = self.decode_chunk_beams(c, opts)
        return tokens[:, 0], lengths[:, 0], scores[:, 0]

    def decode_chunk_beams(self, c: Chunk, opts: DecodeOptions) -> tuple[np.ndarray, ...]:
        """(tokens [B, K, L], lengths [B, K], scores [B, K], token_scores [B, K, L]) of a chunk, best first
        (K = opts.beam). Greedy and sampling are `search` at beam 1 (greedy: temperature 0), beam search at
        `opts.beam`."""
        sample = opts.sample
        keys = None
        if sample:
            seeds = sentence_seeds(c.src, c.src_lengths) & np.uint32(0x7FFFFFFF)
            keys = jax.vmap(jax.random.fold_in, (None, 0))(jax.random.key(opts.seed), seeds)
        out = self._decode(tuple(p for _, p in self.members), c.src, c.src_lengths, c.limits, keys, c.prefix,
                           c.prefix_lengths, max_len=c.max_len, beam=opts.beam, alpha=float(opts.alpha),
                           temperature=float(opts.temperature) if sample else 0.0,
                           top_k=int(opts.top_k) if sample else 0, top_p=float(opts.top_p) if sample else 1.0,
                           no_repeat_ngram=int(opts.no_repeat_ngram))
        return tuple(np.asarray(x) for x in out)

    def decode_ids(
        self, src: np.ndarray, src_lengths: np.ndarray, opts: DecodeOptions = GREEDY,
        progress: Callable[[int], Any] | None = None, prefixes: Sequence[np.ndarray] | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Per row: output ids through eos (a list of int arrays), and its search score (every method: the sum of
        its tokens' log-probs over the length penalty ((5 + length) / 6) ** alpha). `progress(n)` is called with
        the number of rows each chunk finished (a progress bar's update); `prefixes`: per row, forced first ids."""
        self.check(opts)
        outputs: list[np.ndarray | None] = [None] * len(src)
        scores = np.zeros(len(src), np.float32)
        for c in self.chunks(src, src_lengths, prefixes):
            tokens, lengths, chunk_scores, _ = self.decode_chunk_beams(c, opts)
            for j in range(c.real):
                row = int(c.rows[j])
                outputs[row], scores[row] = tokens[j, 0, : lengths[j, 0]], chunk_scores[j, 0]
            if progress is not None:
                progress(c.real)
        return outputs, scores  # type: ignore[return-value]

    def encode_prefixes(self, prefixes: Sequence[str | None]) -> list[np.ndarray]:
        """Target-side texts (None or "": no prefix) -> their ids, without eos."""
        if not hasattr(self.task, "encode_target"):
            raise UserError("this task has no target tokenizer to encode a prefix with")
        return [np.asarray(self.task.encode_target(p), np.int32) if p else np.zeros(0, np.int32) for p in prefixes]

    def hypotheses(self, texts: Sequence[str], opts: DecodeOptions = GREEDY, n_best: int = 1,
                   prefixes: Sequence[str | None] | None = None) -> list[list[tuple[str, float]]]:
        """The `n_best` best (text, score) of each input, best first (n_best <= beam); the scores are the search's,
        as `translate --n-best/--format jsonl` and the ONNX runtime print them."""
        return [[(h.text, h.score) for h in hyps] for hyps in self.details(texts, opts, n_best, prefixes)]

    def details(self, texts: Sequence[str], opts: DecodeOptions = GREEDY, n_best: int = 1,
                prefixes: Sequence[str | None] | None = None, *, align: bool = False,
                replace_unk: bool = False) -> list[list[Hypothesis]]:
        """The `n_best` best `Hypothesis` of each input, best first. align: each output token's source position
        (attention families). replace_unk: every <unk> of the output replaced by the source token it is aligned
        to (OpenNMT's -replace_unk, fairseq's --replace-unk; implies align)."""
        if not 1 <= n_best <= opts.beam:
            raise UserError(f"n_best={n_best} must be between 1 and the beam ({opts.beam})")
        self.check(opts)
        if align or replace_unk:
            self._attention()  # refuses families without attention before decoding
        src, src_lengths = self.task.encode_inputs(list(texts))
        ids = None if prefixes is None else self.encode_prefixes(prefixes)
        out: list[list[Hypothesis]] = [[] for _ in texts]
        vocab = self.task.tgt_vocab.tokens
        for c in self.chunks(src, src_lengths, ids):
            tokens, lengths, scores, steps = self.decode_chunk_beams(c, opts)
            aligned = [self._align(c, tokens[:, k]) for k in range(n_best)] if (align or replace_unk) else None
            for j in range(c.real):
                row = int(c.rows[j])
                for k in range(n_best):
                    n = lengths[j, k]
                    output, where = tokens[j, k, :n], None if aligned is None else aligned[k][j, :n]
                    text = (self._replace_unk(texts[row], output, where) if replace_unk
                            else self.task.decode_output(output))
                    out[row].append(Hypothesis(text, float(scores[j, k]), [vocab[i] for i in output],
                                               [float(x) for x in steps[j, k, :n]],
                                               None if where is None else [int(x) for x in where]))
        return out

    def _attention(self) -> Callable:
        """The first model's teacher-forced attention weights (decoding/attention_weights.py), jitted once."""
        if self._weights is None:
            from s2s_jax.decoding.attention_weights import make_attention_weights

            self._weights = make_attention_weights(build_model(self.cfg))
        return self._weights

    def _align(self, c: Chunk, tokens: np.ndarray) -> np.ndarray:
        """[B, L] source position of each output token (tokens [B, L]) of chunk c: the argmax of its attention
        over the row's own source positions. One call per chunk, on the chunk's shapes (compiled once per
        shape; padding changes no row's weights, the model contract's invariant)."""
        weights = np.asarray(self._attention()(self.params, c.src, c.src_lengths, np.asarray(tokens, np.int32)))
        inside = np.arange(weights.shape[-1])[None, None, :] < c.src_lengths[:, None, None]
        return np.where(inside, weights, -np.inf).argmax(axis=-1)

    def _replace_unk(self, text: str, output: np.ndarray, where: np.ndarray) -> str:
        """The output's text with each <unk> replaced by the source token at its aligned position."""
        task, vocab = self.task, self.task.tgt_vocab
        if vocab.unk_id is None:
            return task.decode_output(output)
        source = task.src_tok.tokenize(text)
        pieces = []
        for i, pos in zip(output.tolist(), where.tolist(), strict=True):
            if i == vocab.eos_id:
                break
            if i in (vocab.pad_id, vocab.bos_id):
                continue
            pieces.append(source[pos] if i == vocab.unk_id and pos < len(source) else vocab.tokens[i])
        return task.tgt_tok.detokenize(pieces)

    def translate(self, texts: Sequence[str], opts: DecodeOptions = GREEDY,
                  progress: Callable[[int], Any] | None = None, prefixes: Sequence[str | None] | None = None,
                  ) -> list[str]:
        """Translations of `texts`, in order; every input is checked before anything is decoded."""
        if not texts:
            return []
        src, src_lengths = self.task.encode_inputs(list(texts))
        ids, _ = self.decode_ids(src, src_lengths, opts, progress,
                                 None if prefixes is None else self.encode_prefixes(prefixes))
        return [self.task.decode_output(row) for row in ids]


def ensemble_members(runs: Sequence[Any]) -> list[tuple[ModelConfig, Any]]:
    """(cfg, params) of runs to decode together with the first: each must read and write the same tokens (same
    vocabularies and tokenizers, same special ids), or averaging their distributions would mix meanings."""
    first = runs[0]
    for run in runs[1:]:
        for side, name in (("src_vocab", "source"), ("tgt_vocab", "target")):
            if getattr(run.task, side).tokens != getattr(first.task, side).tokens:
                raise UserError(f"{run.path} cannot join an ensemble with {first.path}: their {name} vocabularies "
                                "differ (train them on the same data and tokenizer)")
        ids = lambda c: (c.pad_id, c.bos_id, c.eos_id)  # noqa: E731
        if ids(run.config.model) != ids(first.config.model):
            raise UserError(f"{run.path} cannot join an ensemble with {first.path}: their special ids differ")
    return [(r.config.model, r.params) for r in runs[1:]]
