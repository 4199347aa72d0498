"""Translate with an export directory and onnxruntime alone: no torch, no jax, no s2s_jax.

    python -m export.runtime OUT "12+35" "7+8" [--beam 5] [--max-len N] [--alpha 0.6] [--int8] [--threads N]
    python -m export.runtime OUT --input FILE [--batch-size 64] [--n-best K]   (or lines on stdin)

`Translator.load(OUT)` reads model.json (written by export.onnx_export), opens
`encoder.onnx`, `decoder_step.onnx` and, where the export has one, `state_reorder.onnx`,
and decodes batches with `export.search.search_top`, the numpy twin of
`s2s_jax.decoding.search` (same tokens, same scores; beam 1 is greedy in both), over
`export.ort_step.OrtStepper`, which keeps the decoder state in onnxruntime between steps
(a Transformer's KV cache: in numpy buffers it writes in place, export/cache.py). The decoder state and encoder tensors
are whatever model.json names, always batch-first, so this file knows no model family.
Text goes through the front end model.json's `tokenizer.type` names (`TOKENIZERS`),
mirroring the training task: the addition format below, or for text tasks
(word, space, char, SentencePiece) export/text.py, whose per-row length bound
a * source_length + b the search applies as `s2s-jax translate` does. The command
line is export/runtime_cli.py.

Imports: numpy, onnxruntime and the standard library only (sentencepiece for
SentencePiece exports); tests run it with jax, torch and s2s_jax unimportable.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from export.cache import Cache
from export.ensemble import EnsembleStepper
from export.ort_step import DISABLED_OPTIMIZERS, OrtStepper, session_options
from export.search import NO_RULES, Arrays, Rules, SearchResult, search_top
from export.text import TextFrontEnd, TranslationError, Vocab

MANIFEST_FILE = "model.json"
FORMAT = "s2s-jax-onnx"
# 3 added cache states (export/cache.py); 4 has the step write them (export/attention_op.py); a version-2 export
# carries its state in onnxruntime
VERSIONS = (2, 3, 4)
GRAPHS = ("encoder", "decoder_step", "state_reorder")  # state_reorder: null for a cache state
# what this runtime reads from model.json (besides format and version): a missing one is a clear error
REQUIRED = ("config", "special_ids", "max_decode_len", "enc_tensors", "state_tensors", *GRAPHS)


class AdditionTokenizer:
    """Seed 002's addition format (s2s_jax/data/addition.py): "12+35" -> `_12+35}` with `digits`-digit operands."""

    problem = re.compile(r"(\d+)\+(\d+)")

    def __init__(self, spec: dict[str, Any], src: Vocab, tgt: Vocab, directory: str | Path = ".") -> None:
        """`directory` is unused (the format needs no files); every front end takes it so `TOKENIZERS` is uniform."""
        self.digits, self.src, self.tgt = int(spec["digits"]), src, tgt

    def encode(self, text: str) -> list[int]:
        compact = "".join(text.split())
        m = self.problem.fullmatch(compact)
        if m is None:
            raise TranslationError(
                f"{text!r} is not an addition problem: expected A+B with digits 0-9 only, e.g. 12+35")
        for operand in m.groups():
            if len(operand.lstrip("0") or "0") > self.digits:
                raise TranslationError(f"{text!r}: operand {operand} has more than {self.digits} digits, and this "
                                       f"model was trained on {self.digits}-digit addition")
        a, b = int(m.group(1)), int(m.group(2))
        line = f"{a}+{b}".rjust(2 * self.digits + 1, self.src.specials["pad"]) + self.src.specials["eos"]
        return self.src.encode(list(line))

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tgt.decode(ids))

    def row_limits(self, src_lengths: np.ndarray) -> None:
        """No per-row bound: addition decodes up to max_decode_len, as its task does."""
        return None


TOKENIZERS = {"addition": AdditionTokenizer, "text": TextFrontEnd}


def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TranslationError(
            f"{path} is missing; is {path.parent} a directory written by `s2s-jax export`?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TranslationError(f"{path} is not valid JSON ({e}); export again") from None
    if manifest.get("format") != FORMAT:
        raise TranslationError(f"{path} is not an s2s-jax ONNX export (format {manifest.get('format')!r})")
    if manifest.get("version") not in VERSIONS:
        raise TranslationError(f"{path} has export format version {manifest.get('version')}; this runtime reads "
                               f"versions {', '.join(map(str, VERSIONS))}: export again with this version of s2s-jax")
    missing = [key for key in REQUIRED if key not in manifest]
    missing += [f"special_ids.{k}" for k in ("pad", "bos", "eos") if k not in manifest.get("special_ids", {k: 0})]
    missing += [f"{g}.file" for g in GRAPHS if manifest.get(g) is not None and "file" not in manifest[g]]
    if manifest.get("state_reorder", 0) is None and not manifest.get("cache"):
        missing.append("state_reorder (or cache)")
    if missing:
        raise TranslationError(f"{path} lacks {', '.join(missing)}; it is damaged or was edited: export again")
    return manifest


def open_session(path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """An onnxruntime session for the graph at `path`; a missing, truncated or invalid file is a TranslationError."""
    if not path.is_file():
        raise TranslationError(f"{path} is missing; export again")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                    disabled_optimizers=list(DISABLED_OPTIMIZERS))
    except Exception as e:  # onnxruntime raises its own Fail / InvalidProtobuf / InvalidGraph types
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TranslationError(f"{path} is not a valid ONNX graph ({reason[:200]}); export again") from None


class Translator:
    """Batched greedy / beam translation over an encoder and a decoder-step onnxruntime session."""

    def __init__(self, manifest: dict[str, Any], stepper: OrtStepper, directory: str | Path = ".") -> None:
        """`directory`: where the files model.json names besides the graphs (SentencePiece models) are."""
        self.manifest, self.stepper = manifest, stepper
        ids = manifest["special_ids"]
        self.pad_id, self.bos_id, self.eos_id = int(ids["pad"]), int(ids["bos"]), int(ids["eos"])
        self.max_decode_len = int(manifest["max_decode_len"])
        spec, vocab = manifest.get("tokenizer"), manifest.get("vocab")
        self.tokenizer = None
        if spec is not None:
            if spec["type"] not in TOKENIZERS:
                raise TranslationError(f"tokenizer {spec['type']!r} is not supported; known: {sorted(TOKENIZERS)}")
            self.tokenizer = TOKENIZERS[spec["type"]](spec, Vocab(vocab["src"]), Vocab(vocab["tgt"]), directory)

    @classmethod
    def load(cls, out: str | Path, *, int8: bool = False, threads: int | None = None, optimization: str = "all",
             ensemble: Sequence[str | Path] = ()) -> Translator:
        """Open the export in `out` (`int8=True`: the quantized graphs written by `--quantize int8`) with
        `threads` intra-op threads (None: one per core) and graph optimization level `optimization`
        (disable, basic, extended, all). ensemble: more exports decoded with it, their distributions averaged
        each step (export/ensemble.py); they must share its vocabularies, tokenizer and special ids."""
        first = cls._load(out, int8, threads, optimization)
        if not ensemble:
            return first
        members = [first]
        for other in ensemble:
            member = cls._load(other, int8, threads, optimization)
            for key in ("vocab", "special_ids", "tokenizer"):
                if member.manifest.get(key) != first.manifest.get(key):
                    raise TranslationError(f"{other} cannot join an ensemble with {out}: their {key} differ (export "
                                           "models trained on the same data and tokenizer)")
            members.append(member)
        steps = [m.manifest["max_decode_steps"] for m in members if m.manifest.get("max_decode_steps")]
        first.stepper = EnsembleStepper([m.stepper for m in members], first.eos_id)
        first.manifest = dict(first.manifest, max_decode_steps=min(steps) if steps else None)
        return first

    @classmethod
    def _load(cls, out: str | Path, int8: bool, threads: int | None, optimization: str) -> Translator:
        if threads is not None and threads < 1:
            raise TranslationError(f"threads={threads} must be >= 1")
        manifest = read_manifest(out)
        files = {key: manifest[key]["file"] for key in GRAPHS if manifest[key] is not None}
        if int8:
            if "int8" not in manifest:
                raise TranslationError(f"{out} has no int8 graphs; export with --quantize int8")
            files.update({key: manifest["int8"][key] for key in ("encoder", "decoder_step")})
        try:
            options = session_options(threads, optimization)
        except ValueError as e:
            raise TranslationError(str(e)) from None
        sessions = {key: open_session(Path(out) / file, options) for key, file in files.items()}
        for key, session in sessions.items():
            _check_names(manifest, key, session, Path(out) / files[key])
        return cls(manifest, OrtStepper(manifest, sessions["encoder"], sessions["decoder_step"],
                                        sessions.get("state_reorder")), directory=out)

    # -- model calls (numpy in and out: tests and tools; search() keeps the state in onnxruntime) ----------

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Arrays, Any]:
        """(encoder tensors, initial state) for ids [B, S] and lengths [B], as numpy arrays (a cache state is its
        `export.cache.Cache`, numpy already)."""
        enc, state = self.stepper.encode(src, src_lengths)
        return [v.numpy() for v in enc], _arrays(state)

    def step(self, enc: Arrays, token: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        """One decoder step on numpy arrays: (log-probs [N, V], next state)."""
        n = len(token)
        state = state if isinstance(state, Cache) else _values(state)
        logp, _, state = self.stepper.top_step(_values(enc), token, state, np.zeros(n, np.float32),
                                               np.zeros(n, bool), None)
        return logp, _arrays(state)

    def search(self, src: np.ndarray, src_lengths: np.ndarray, *, beam: int = 1, max_len: int | None = None,
               alpha: float = 0.0, row_max_len: np.ndarray | None = None, rules: Rules = NO_RULES) -> SearchResult:
        """n-best ids for a batch of ids: tokens [B, K, L], lengths [B, K], scores [B, K] (K = beam; 1 is greedy).

        Scores are the length-penalised log-probs of `export.search` (greedy's too). `row_max_len` [B]: each
        row's bound (eos forced on its last step); `max_len` then defaults to the largest, capped by
        max_decode_steps, instead of model.json's max_decode_len. rules: n-gram blocking, prefixes, sampling
        (`export.search.Rules`)."""
        if beam < 1:
            raise TranslationError(f"beam={beam} must be >= 1")
        steps = self.manifest.get("max_decode_steps")
        if max_len is None:
            max_len = self.max_decode_len if row_max_len is None else min(int(np.max(row_max_len)), steps or 2**31)
        if not 1 <= max_len <= (steps or max_len):
            raise TranslationError(f"max_len={max_len} must be between 1 and {steps or 'inf'} "
                                   "(the decoder state of this model holds max_decode_steps positions)")
        # Padding past the longest row changes no output (the contract's padding invariance) and costs every
        # step its cross-attention: onnxruntime, unlike a compiled loop, needs no fixed widths, so it goes.
        src = src[:, : max(1, int(np.max(src_lengths)))]
        limit = self.manifest.get("max_src_len")
        if limit is not None and src.shape[1] > limit:
            raise TranslationError(f"source length {src.shape[1]} exceeds this model's limit of {limit} tokens "
                                   "(max_src_len in model.json); split or shorten the input")
        enc, state = self.stepper.encode(src, src_lengths)
        st = self.stepper
        try:
            return search_top(st.top_step, enc, state, batch=len(src), beam=beam, max_len=max_len,
                              bos_id=self.bos_id, eos_id=self.eos_id, pad_id=self.pad_id, alpha=alpha,
                              row_max_len=row_max_len, reorder=st.reorder, take=st.take, rules=rules,
                              shared_encoder=st.shared_encoder)
        except ValueError as e:  # a bad option (top_p, sampling with beams, ...): the caller's input
            raise TranslationError(str(e)) from None
        finally:
            st.release()  # the kept step binding holds the last state and encoder tensors

    # -- text ---------------------------------------------------------------------------------

    def translate(self, texts: Sequence[str], *, n_best: int = 1, **options: Any) -> list[str] | list[list[str]]:
        """Translate `texts`; n_best > 1 gives a list per text, best first (options: see `details`)."""
        hyps = self.hypotheses(texts, n_best=n_best, **options)
        return [[t for t, _ in h] if n_best > 1 else h[0][0] for h in hyps]

    def hypotheses(self, texts: Sequence[str], **options: Any) -> list[list[tuple[str, float]]]:
        """The `n_best` best (text, search score) of each of `texts`; options: see `details`."""
        return [[(h["text"], h["score"]) for h in hyps] for hyps in self.details(texts, **options)]

    def details(self, texts: Sequence[str], *, beam: int = 1, max_len: int | None = None, alpha: float = 0.0,
                batch_size: int = 32, n_best: int = 1, prefixes: Sequence[str | None] | None = None,
                no_repeat_ngram: int = 0, sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                top_p: float = 1.0, seed: int = 0) -> list[list[dict[str, Any]]]:
        """The `n_best` best hypotheses of each of `texts` (all checked before any is decoded), best first, as
        {"text", "score", "tokens", "token_scores"}: the search score, the output tokens through eos and each
        one's log-prob (what `--print-scores` prints).

        Text exports bound each row by the task's a * source_length + b tokens (and by `max_len` if given), as
        `s2s-jax translate` does, with room for its prefix and eos. prefixes: per text, target text whose tokens
        start the output. no_repeat_ngram: never repeat an n-gram. sample: draw each token from softmax(log-probs
        / temperature) within the top_k and the top_p nucleus, a sentence's draws seeded by `seed` and its own
        source ids. Rows never influence each other, so chunking (longest first, to pad little) does not change
        any output."""
        if self.tokenizer is None:
            raise TranslationError("this export has no tokenizer (exported without a task); use search() on ids")
        if not 1 <= n_best <= beam:
            raise TranslationError(f"n_best={n_best} must be between 1 and beam={beam}")
        if batch_size < 1:
            raise TranslationError(f"batch_size={batch_size} must be >= 1")
        if sample and beam > 1:
            raise TranslationError(f"sampling takes one hypothesis: beam={beam} must be 1")
        if prefixes is not None and not hasattr(self.tokenizer, "encode_target"):
            raise TranslationError("this export's front end has no target tokenizer to encode a prefix with")
        if prefixes is not None and len(prefixes) != len(texts):
            raise TranslationError(f"{len(prefixes)} prefixes for {len(texts)} inputs: give one per input")
        rows = [self.tokenizer.encode(t) for t in texts]
        forced = [self.tokenizer.encode_target(p) if p else [] for p in prefixes] if prefixes is not None else None
        steps = self.manifest.get("max_decode_steps")
        if forced and steps and max(map(len, forced)) + 1 > steps:
            raise TranslationError(f"a prefix of {max(map(len, forced))} tokens leaves no room in this model's "
                                   f"{steps} decoding positions; shorten it")
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: list[Any] = [None] * len(rows)
        vocab = self.tokenizer.tgt.tokens
        for start in range(0, len(rows), batch_size):
            picked = order[start:start + batch_size]
            lengths = np.array([len(rows[i]) for i in picked], np.int64)
            src = np.full((len(picked), max(lengths)), self.pad_id, np.int64)
            for j, i in enumerate(picked):
                src[j, : len(rows[i])] = rows[i]
            row_max_len = self.tokenizer.row_limits(lengths)
            if row_max_len is not None:
                caps = [c for c in (max_len, steps) if c is not None]
                row_max_len = np.minimum(row_max_len, min(caps)) if caps else row_max_len
            rules = self._rules(src, lengths, forced, picked, no_repeat_ngram, sample, temperature, top_k, top_p,
                                seed)
            if rules.prefix is not None and row_max_len is not None:
                row_max_len = np.maximum(row_max_len, rules.prefix_lengths + 1)
            out = self.search(src, lengths, beam=beam, max_len=max_len, alpha=alpha, row_max_len=row_max_len,
                              rules=rules)
            for j, i in enumerate(picked):
                results[i] = [{"text": self.tokenizer.decode(out.tokens[j, k]), "score": float(out.scores[j, k]),
                               "tokens": [vocab[t] for t in out.tokens[j, k, : out.lengths[j, k]]],
                               "token_scores": [float(x) for x in out.token_scores[j, k, : out.lengths[j, k]]]}
                              for k in range(n_best)]
        return results

    @staticmethod
    def _rules(src: np.ndarray, lengths: np.ndarray, forced: list[list[int]] | None, picked: list[int],
               no_repeat_ngram: int, sample: bool, temperature: float, top_k: int, top_p: float, seed: int) -> Rules:
        """The search rules of one chunk: its rows' prefixes (ids [B, P]) and sampling generators, each seeded
        with (seed, crc32 of the row's int32 source ids), as s2s-jax keys a sentence's draws."""
        prefix = prefix_lengths = seeds = None
        if forced is not None:
            prefix_lengths = np.array([len(forced[i]) for i in picked], np.int32)
            prefix = np.zeros((len(picked), max(1, int(prefix_lengths.max()))), np.int64)
            for j, i in enumerate(picked):
                prefix[j, : prefix_lengths[j]] = forced[i]
        if sample:
            seeds = [(seed, zlib.crc32(np.asarray(r[:n], np.int32).tobytes())) for r, n in zip(src, lengths,
                                                                                              strict=True)]
        return Rules(no_repeat_ngram=no_repeat_ngram, prefix=prefix, prefix_lengths=prefix_lengths,
                     temperature=temperature if sample else 0.0, top_k=top_k if sample else 0,
                     top_p=top_p if sample else 1.0, seeds=seeds)


def _check_names(manifest: dict[str, Any], key: str, session: ort.InferenceSession, path: Path) -> None:
    """model.json's tensor names for graph `key` must be the graph's own (a mismatch would fail mid-decoding)."""
    for side, found in (("inputs", session.get_inputs()), ("outputs", session.get_outputs())):
        names = manifest[key].get(side)
        if names is not None and sorted(names) != sorted(x.name for x in found):
            raise TranslationError(f"model.json's {key}.{side} do not match {path.name}'s; the export is mixed up "
                                   "or was edited: export again")


def _values(arrays: Arrays) -> list[ort.OrtValue]:
    return [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in arrays]


def _arrays(state: Any) -> Any:
    return state if isinstance(state, Cache) else [v.numpy() for v in state]


def main(argv: list[str] | None = None) -> int:
    """`python -m export.runtime`: see export/runtime_cli.py."""
    from export.runtime_cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    raise SystemExit(main())
