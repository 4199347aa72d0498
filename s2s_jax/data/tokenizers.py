"""Text <-> token strings: char, word (regex), whitespace, and SentencePiece trained on the train split.

Every tokenizer turns text into a list of token *strings*; a `Vocab` maps those
to ids. That keeps one id space and one set of specials (pad/bos/eos/unk) for
every kind, SentencePiece included: its pieces are just strings to the vocab.

`detokenize` inverts `tokenize` as far as the kind allows: exactly for char and
SentencePiece, by joining with spaces for word/space tokenizers (which is
exactly the text for pre-tokenized data such as Multi30k's `lc.norm.tok`).

A tokenizer is saved as its `settings()` (JSON) plus, for SentencePiece, the
model bytes in a file beside it; `load_tokenizer` rebuilds it from both.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from s2s_jax.data.imported_tokenizers import FairseqTokenizer, MarianTokenizer
from s2s_jax.errors import UserError

WORD_REGEX = r"\w+|[^\w\s]"
KINDS = ("char", "word", "space", "spm")


class CharTokenizer:
    """One token per character, spaces included (so detokenize is exact)."""

    kind = "char"

    def __init__(self, lowercase: bool = False) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        return list(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase}


class WordTokenizer:
    """Tokens are the matches of `regex` (default: runs of word characters, and single punctuation marks)."""

    kind = "word"

    def __init__(self, lowercase: bool = False, regex: str = WORD_REGEX) -> None:
        try:
            self.pattern = re.compile(regex)
        except re.error as e:
            raise UserError(f"word tokenizer: bad regex {regex!r}: {e}") from None
        self.lowercase = lowercase
        self.regex = regex

    def tokenize(self, text: str) -> list[str]:
        return self.pattern.findall(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return " ".join(tokens)

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase, "regex": self.regex}


class SpaceTokenizer(WordTokenizer):
    """Split on whitespace only: for text that is already tokenized (Multi30k `lc.norm.tok`)."""

    kind = "space"

    def __init__(self, lowercase: bool = False) -> None:
        super().__init__(lowercase, r"\S+")

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "lowercase": self.lowercase}


class SentencePieceTokenizer:
    """A SentencePiece model (unigram or BPE), trained in-process on the training text; lossless detokenize."""

    kind = "spm"

    def __init__(
        self, model_proto: bytes, vocab_size: int, model_type: str = "unigram", lowercase: bool = False
    ) -> None:
        import sentencepiece as spm

        self.lowercase = lowercase
        self.model_proto = model_proto
        self.vocab_size = vocab_size
        self.model_type = model_type
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, model_type: str = "unigram", lowercase: bool = False
    ) -> SentencePieceTokenizer:
        """Train on `texts` (the train split only). `hard_vocab_limit=False`: a small corpus gets fewer
        pieces instead of an error."""
        import sentencepiece as spm

        out = io.BytesIO()
        texts = [t.lower() for t in texts] if lowercase else list(texts)
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(texts), model_writer=out, vocab_size=vocab_size, model_type=model_type,
                character_coverage=1.0, hard_vocab_limit=False, bos_id=-1, eos_id=-1, minloglevel=2,
            )
        except RuntimeError as e:
            raise UserError(f"sentencepiece training failed (vocab_size={vocab_size}, {model_type}): {e}") from None
        return cls(out.getvalue(), vocab_size, model_type, lowercase)

    def tokenize(self, text: str) -> list[str]:
        return self.sp.encode(text.lower() if self.lowercase else text, out_type=str)

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.sp.decode_pieces(list(tokens))

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "vocab_size": self.vocab_size, "model_type": self.model_type,
                "lowercase": self.lowercase}


Tokenizer = CharTokenizer | WordTokenizer | SpaceTokenizer | SentencePieceTokenizer | MarianTokenizer | FairseqTokenizer


def make_tokenizer(
    kind: str, *, lowercase: bool = False, regex: str | None = None, texts: Iterable[str] = (),
    vocab_size: int = 8000, model_type: str = "unigram",
) -> Tokenizer:
    """A new tokenizer of `kind`; SentencePiece is trained on `texts` (pass the train split only)."""
    if kind == "char":
        return CharTokenizer(lowercase)
    if kind == "word":
        return WordTokenizer(lowercase, regex or WORD_REGEX)
    if kind == "space":
        return SpaceTokenizer(lowercase)
    if kind == "spm":
        return SentencePieceTokenizer.train(texts, vocab_size, model_type, lowercase)
    raise UserError(f"unknown tokenizer {kind!r}; choose one of {', '.join(KINDS)}")


def save_tokenizer(tok: Tokenizer, directory: str | Path, stem: str) -> dict[str, Any]:
    """Write what `tok` needs besides its settings (the SentencePiece model as `{stem}.model`); return the
    settings to store in JSON, with the model file's name."""
    settings = tok.settings()
    proto = getattr(tok, "model_proto", None)  # SentencePiece, Marian and fairseq-with-SentencePiece tokenizers
    if proto is not None:
        name = f"{stem}.model"
        (Path(directory) / name).write_bytes(proto)
        settings["model_file"] = name
    if isinstance(tok, MarianTokenizer) and tok.decode_proto != tok.model_proto:
        name = f"{stem}.decode.model"
        (Path(directory) / name).write_bytes(tok.decode_proto)
        settings["decode_model_file"] = name
    return settings


def _read_model(directory: str | Path, name: str) -> bytes:
    path = Path(directory) / name
    try:
        return path.read_bytes()
    except OSError:
        raise UserError(f"sentencepiece model {path} is missing; the workdir is incomplete") from None


def load_tokenizer(settings: dict[str, Any], directory: str | Path) -> Tokenizer:
    """The tokenizer that `save_tokenizer` wrote to `directory` with these `settings`."""
    settings = dict(settings)
    kind = settings.pop("kind", None)
    if kind == "spm":
        path = Path(directory) / settings.get("model_file", "")
        try:
            proto = path.read_bytes()
        except OSError:
            raise UserError(f"sentencepiece model {path} is missing; the workdir is incomplete") from None
        try:
            return SentencePieceTokenizer(
                proto, int(settings["vocab_size"]), settings.get("model_type", "unigram"),
                bool(settings.get("lowercase", False)),
            )
        except (RuntimeError, KeyError) as e:
            raise UserError(f"sentencepiece model {path} is unreadable ({e}); the workdir is corrupt") from None
    if kind == "marian":
        decode = settings.get("decode_model_file")
        return MarianTokenizer(_read_model(directory, settings.get("model_file", "")), str(settings.get("side")),
                               None if decode is None else _read_model(directory, decode))
    if kind == "fairseq":
        model = settings.get("model_file")
        return FairseqTokenizer(str(settings.get("side")), str(settings.get("bpe", "none")),
                                None if model is None else _read_model(directory, model))
    if kind == "char":
        return CharTokenizer(bool(settings.get("lowercase", False)))
    if kind == "word":
        return WordTokenizer(bool(settings.get("lowercase", False)), settings.get("regex", WORD_REGEX))
    if kind == "space":
        return SpaceTokenizer(bool(settings.get("lowercase", False)))
    raise UserError(f"unknown tokenizer settings {settings | {'kind': kind}}")
