"""Translate with an export directory and onnxruntime alone: no torch, no jax, no s2s_jax.

    python -m export.runtime OUT "12+35" "7+8" [--beam 5] [--max-len N] [--alpha 0.6] [--int8]
    python -m export.runtime OUT "ein hund läuft ." [--beam 5]        (a model trained on text)

`Translator.load(OUT)` reads model.json (written by export.onnx_export), opens
`encoder.onnx` and `decoder_step.onnx`, and decodes batches with `export.search.search`,
the numpy twin of `s2s_jax.decoding.search` (same tokens, same scores; beam 1 is greedy
in both). The decoder state and encoder tensors are whatever model.json
names, always batch-first, so this file knows no model family. Text goes
through the front end model.json's `tokenizer.type` names (`TOKENIZERS`),
mirroring the training task: the addition format below, or for text tasks
(word, space, char, SentencePiece) export/text.py, whose per-row length bound
a * source_length + b the search applies as `s2s-jax translate` does.

Imports: numpy, onnxruntime and the standard library only (sentencepiece for
SentencePiece exports); tests run it with jax, torch and s2s_jax unimportable.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from export.search import Arrays, SearchResult, search
from export.text import TextFrontEnd, TranslationError, Vocab

MANIFEST_FILE = "model.json"
FORMAT = "s2s-jax-onnx"
VERSION = 1
DTYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32, "tensor(bool)": np.bool_}


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
    if manifest.get("version") != VERSION:
        raise TranslationError(f"{path} has export format version {manifest.get('version')}; this runtime reads "
                               f"version {VERSION}: export again with this version of s2s-jax")
    return manifest


class Translator:
    """Batched greedy / beam translation over an encoder and a decoder-step onnxruntime session."""

    def __init__(self, manifest: dict[str, Any], encoder: ort.InferenceSession, decoder: ort.InferenceSession,
                 directory: str | Path = ".") -> None:
        """`directory`: where the files model.json names besides the graphs (SentencePiece models) are."""
        self.manifest, self.encoder, self.decoder = manifest, encoder, decoder
        ids = manifest["special_ids"]
        self.pad_id, self.bos_id, self.eos_id = int(ids["pad"]), int(ids["bos"]), int(ids["eos"])
        self.max_decode_len = int(manifest["max_decode_len"])
        self.enc_names, self.state_names = manifest["enc_tensors"], manifest["state_tensors"]
        self.dec_inputs = manifest["decoder_step"]["inputs"]
        self.in_types = {i.name: DTYPES[i.type] for s in (encoder, decoder) for i in s.get_inputs()}
        spec, vocab = manifest.get("tokenizer"), manifest.get("vocab")
        self.tokenizer = None
        if spec is not None:
            if spec["type"] not in TOKENIZERS:
                raise TranslationError(f"tokenizer {spec['type']!r} is not supported; known: {sorted(TOKENIZERS)}")
            self.tokenizer = TOKENIZERS[spec["type"]](spec, Vocab(vocab["src"]), Vocab(vocab["tgt"]), directory)

    @classmethod
    def load(cls, out: str | Path, *, int8: bool = False, threads: int | None = None) -> Translator:
        """Open the export in `out` (`int8=True`: the quantized graphs written by `--quantize int8`)."""
        manifest = read_manifest(out)
        files = {key: manifest[key]["file"] for key in ("encoder", "decoder_step")}
        if int8:
            if "int8" not in manifest:
                raise TranslationError(f"{out} has no int8 graphs; export with --quantize int8")
            files = {key: manifest["int8"][key] for key in files}
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        sessions = []
        for key in ("encoder", "decoder_step"):
            path = Path(out) / files[key]
            if not path.is_file():
                raise TranslationError(f"{path} is missing; export again")
            sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))
        return cls(manifest, *sessions, directory=out)

    # -- model calls ------------------------------------------------------------------------

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> tuple[Arrays, Arrays]:
        """(encoder tensors, initial state) for ids [B, S] and lengths [B]."""
        feeds = {"src": src.astype(self.in_types["src"]),
                 "src_lengths": src_lengths.astype(self.in_types["src_lengths"])}
        outputs = self.encoder.run(None, feeds)
        n = len(self.enc_names)
        return outputs[:n], outputs[n:]

    def step(self, enc: Arrays, token: np.ndarray, state: Arrays) -> tuple[np.ndarray, Arrays]:
        """One decoder step: (log-probs [N, V], next state)."""
        values = dict(zip(self.enc_names, enc, strict=True))
        values.update(zip(self.state_names, state, strict=True))
        values["token"] = token.astype(self.in_types["token"])
        outputs = self.decoder.run(None, {name: values[name] for name in self.dec_inputs})
        return outputs[0], outputs[1:]

    def search(self, src: np.ndarray, src_lengths: np.ndarray, *, beam: int = 1, max_len: int | None = None,
               alpha: float = 0.0, row_max_len: np.ndarray | None = None) -> SearchResult:
        """n-best ids for a batch of ids: tokens [B, K, L], lengths [B, K], scores [B, K] (K = beam; 1 is greedy).

        Scores are the length-penalised log-probs of `export.search` (greedy's too). `row_max_len` [B]: each
        row's bound (eos forced on its last step); `max_len` then defaults to the largest, capped by
        max_decode_steps, instead of model.json's max_decode_len."""
        if beam < 1:
            raise TranslationError(f"beam={beam} must be >= 1")
        steps = self.manifest.get("max_decode_steps")
        if max_len is None:
            max_len = self.max_decode_len if row_max_len is None else min(int(np.max(row_max_len)), steps or 2**31)
        if not 1 <= max_len <= (steps or max_len):
            raise TranslationError(f"max_len={max_len} must be between 1 and {steps or 'inf'} "
                                   "(the decoder state of this model holds max_decode_steps positions)")
        limit = self.manifest.get("max_src_len")
        if limit is not None and src.shape[1] > limit:
            raise TranslationError(f"source length {src.shape[1]} exceeds this model's limit of {limit} tokens "
                                   "(max_src_len in model.json); split or shorten the input")
        enc, state = self.encode(src, src_lengths)
        return search(self.step, enc, state, batch=len(src), beam=beam, max_len=max_len, bos_id=self.bos_id,
                      eos_id=self.eos_id, pad_id=self.pad_id, alpha=alpha, row_max_len=row_max_len)

    # -- text ---------------------------------------------------------------------------------

    def translate(self, texts: Sequence[str], *, beam: int = 1, max_len: int | None = None, alpha: float = 0.0,
                  batch_size: int = 32, n_best: int = 1) -> list[str] | list[list[str]]:
        """Translate `texts` (all checked before any is decoded); n_best > 1 gives a list per text, best first.

        Text exports bound each row by the task's a * source_length + b tokens (and by `max_len` if given), as
        `s2s-jax translate` does; rows never influence each other, so chunking (longest first, to pad little)
        does not change any output."""
        if self.tokenizer is None:
            raise TranslationError("this export has no tokenizer (exported without a task); use search() on ids")
        if not 1 <= n_best <= beam:
            raise TranslationError(f"n_best={n_best} must be between 1 and beam={beam}")
        if batch_size < 1:
            raise TranslationError(f"batch_size={batch_size} must be >= 1")
        rows = [self.tokenizer.encode(t) for t in texts]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        results: list[Any] = [None] * len(rows)
        for start in range(0, len(rows), batch_size):
            picked = order[start:start + batch_size]
            lengths = np.array([len(rows[i]) for i in picked], np.int64)
            src = np.full((len(picked), max(lengths)), self.pad_id, np.int64)
            for j, i in enumerate(picked):
                src[j, : len(rows[i])] = rows[i]
            row_max_len = self.tokenizer.row_limits(lengths)
            if row_max_len is not None:
                caps = [c for c in (max_len, self.manifest.get("max_decode_steps")) if c is not None]
                row_max_len = np.minimum(row_max_len, min(caps)) if caps else row_max_len
            out = self.search(src, lengths, beam=beam, max_len=max_len, alpha=alpha, row_max_len=row_max_len)
            for j, i in enumerate(picked):
                hyps = [self.tokenizer.decode(out.tokens[j, k]) for k in range(n_best)]
                results[i] = hyps if n_best > 1 else hyps[0]
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.runtime", description="Translate with an ONNX export.")
    parser.add_argument("out", help="export directory (model.json, encoder.onnx, decoder_step.onnx)")
    parser.add_argument("texts", nargs="+", help="inputs to translate, e.g. 12+35 or a sentence")
    parser.add_argument("--beam", type=int, default=1, help="beam size (1: greedy)")
    parser.add_argument("--max-len", type=int, default=None, help="most tokens to generate (default: model.json)")
    parser.add_argument("--alpha", type=float, default=0.0, help="length penalty exponent")
    parser.add_argument("--n-best", type=int, default=1, help="hypotheses to print per input (<= beam)")
    parser.add_argument("--int8", action="store_true", help="use the int8 graphs of `--quantize int8`")
    args = parser.parse_args(argv)
    try:
        translator = Translator.load(args.out, int8=args.int8)
        outputs = translator.translate(args.texts, beam=args.beam, max_len=args.max_len, alpha=args.alpha,
                                       n_best=args.n_best)
    except TranslationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for out in outputs:
        print("\t".join(out) if isinstance(out, list) else out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
