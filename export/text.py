"""Text <-> ids for the onnxruntime-only runtime, without s2s_jax: vocab lookup and the four tokenizers.

`export.runtime` must run where jax, torch and s2s_jax are not installed, so
this file re-implements, from model.json alone, what a translation task
(s2s_jax/data/translation.py) does around the model:

    text -> tokenizer.tokenize -> vocab ids (unknown -> unk) -> model
    ids -> vocab tokens (up to eos, pad/bos dropped) -> tokenizer.detokenize -> text

with the tokenizers of s2s_jax/data/tokenizers.py (char, word with its regex,
space, SentencePiece) read from the settings `save_tokenizer` wrote, and each
row's output bounded by the task's `len_a * source_length + len_b` rule. The
tests compare every piece with the s2s_jax originals, so a change there that is
not mirrored here fails.

Imports: numpy and the standard library; `sentencepiece` only when a
SentencePiece model is loaded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.text_imported import IMPORTED


class TranslationError(ValueError):
    """Bad input to the runtime (export directory, text, option); the message says what and how to fix it."""


class Vocab:
    """The id <-> token part of s2s_jax.data.vocab.Vocab, read from model.json's `vocab` entry."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.tokens = list(data["tokens"])
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.specials = dict(data["specials"])

    def id_of(self, role: str) -> int | None:
        sym = self.specials.get(role)
        return None if sym is None else self.index[sym]

    def encode(self, tokens: Sequence[str]) -> list[int]:
        unk = self.id_of("unk")
        ids = [self.index.get(t, unk) for t in tokens]
        if None in ids:
            bad = [t for t, i in zip(tokens, ids, strict=True) if i is None]
            raise TranslationError(f"{bad[0]!r} is not in the vocabulary (which has no unk token)")
        return ids

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Tokens up to the first eos, with pad/bos dropped (Vocab.decode's defaults)."""
        eos = self.id_of("eos")
        drop = {self.id_of("pad"), self.id_of("bos"), eos} - {None}
        out = []
        for i in ids:
            if int(i) == eos:
                break
            if int(i) not in drop:
                out.append(self.tokens[int(i)])
        return out


class RegexTokenizer:
    """char (one token per character), word (the matches of a regex) and space (`\\S+`) tokenizers."""

    PATTERNS = {"char": None, "space": r"\S+"}

    def __init__(self, settings: dict[str, Any]) -> None:
        self.kind = settings["kind"]
        self.lowercase = bool(settings.get("lowercase", False))
        regex = settings["regex"] if self.kind == "word" else self.PATTERNS[self.kind]
        self.pattern = None if regex is None else re.compile(regex)

    def tokenize(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        return list(text) if self.pattern is None else self.pattern.findall(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return ("" if self.pattern is None else " ").join(tokens)


class SentencePieceTokenizer:
    """A SentencePiece model file copied into the export directory by `s2s-jax export`."""

    def __init__(self, settings: dict[str, Any], directory: Path) -> None:
        try:
            import sentencepiece as spm
        except ImportError:
            raise TranslationError("this export uses a SentencePiece tokenizer: pip install sentencepiece") from None
        path = directory / settings["model_file"]
        if not path.is_file():
            raise TranslationError(f"{path} is missing; export again")
        self.lowercase = bool(settings.get("lowercase", False))
        self.sp = spm.SentencePieceProcessor(model_file=str(path))

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(text.lower() if self.lowercase else text, out_type=str)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.sp.decode_pieces(list(tokens))


Tokenizer = RegexTokenizer | SentencePieceTokenizer
KINDS = ("char", "word", "space", "spm")


def load_tokenizer(settings: dict[str, Any], directory: str | Path) -> Tokenizer:
    """The tokenizer of `settings` (as s2s_jax.data.tokenizers.save_tokenizer returned them)."""
    kind = settings.get("kind")
    if kind == "spm":
        return SentencePieceTokenizer(settings, Path(directory))
    if kind in IMPORTED:  # imported models' own tokenizers (export/text_imported.py)
        return IMPORTED[kind](settings, Path(directory), TranslationError)
    if kind in KINDS:
        return RegexTokenizer(settings)
    raise TranslationError(f"tokenizer kind {kind!r} is not supported by this runtime; known: "
                           f"{KINDS + tuple(IMPORTED)}")


class TextFrontEnd:
    """Source text -> ids and output ids -> text for a translation export (model.json tokenizer type "text")."""

    def __init__(self, spec: dict[str, Any], src: Vocab, tgt: Vocab, directory: str | Path) -> None:
        self.src, self.tgt = src, tgt
        self.src_tok = load_tokenizer(spec["src"], directory)
        self.tgt_tok = self.src_tok if spec["tgt"] == spec["src"] else load_tokenizer(spec["tgt"], directory)
        self.len_a, self.len_b = float(spec["len_a"]), int(spec["len_b"])

    def encode(self, text: str) -> list[int]:
        ids = self.src.encode(self.src_tok.tokenize(text))
        if not ids:
            raise TranslationError(f"input {text!r} has no tokens to translate")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tgt_tok.detokenize(self.tgt.decode(ids))

    def encode_target(self, text: str) -> list[int]:
        """A target-side text (a forced prefix) -> its ids, without eos."""
        return self.tgt.encode(self.tgt_tok.tokenize(text))

    def row_limits(self, src_lengths: np.ndarray) -> np.ndarray:
        """[B] most tokens (eos included) each row may produce: TranslationTask.decode_limit's a * len + b."""
        return np.floor(self.len_a * np.asarray(src_lengths) + self.len_b).astype(np.int32)
