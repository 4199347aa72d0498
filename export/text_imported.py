"""The runtime's copies of s2s_jax/data/imported_tokenizers.py: Hugging Face Marian's and fairseq's text handling.

numpy-free even, and without s2s_jax: `export/text.py` loads these for the tokenizer kinds "marian" and
"fairseq" that `s2s-jax export` writes for imported models. Each method is the s2s_jax original line for line
(tests/importers compare them on the same texts): the source side ends with `</s>`; Marian keeps a leading
`>>xx<<` language code as one token, drops `</s>`, `<unk>`, `<pad>` when decoding, joins pieces with the
decoding SentencePiece model and turns the remaining "▁" into spaces; fairseq splits on whitespace (or encodes
with its SentencePiece model) and undoes the BPE on output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

EOS = "</s>"
MARIAN_SPECIALS = ("</s>", "<unk>", "<pad>")
SPIECE_UNDERLINE = "\u2581"


def _processor(directory: Path, name: str, error: type[Exception]) -> Any:
    try:
        import sentencepiece as spm
    except ImportError:
        raise error("this export uses a SentencePiece tokenizer: pip install sentencepiece") from None
    path = directory / name
    if not path.is_file():
        raise error(f"{path} is missing; export again")
    return spm.SentencePieceProcessor(model_file=str(path))


class MarianTokenizer:
    def __init__(self, settings: dict[str, Any], directory: Path, error: type[Exception]) -> None:
        self.source = settings["side"] == "source"
        self.sp = _processor(directory, settings["model_file"], error)
        decode = settings.get("decode_model_file")
        self.decode_sp = self.sp if decode is None else _processor(directory, decode, error)

    def tokenize(self, text: str) -> list[str]:
        end = text.find("<<") if text.startswith(">>") else -1
        code, rest = ([text[: end + 2]], text[end + 2 :]) if end != -1 else ([], text)
        return code + self.sp.encode(rest, out_type=str) + ([EOS] if self.source else [])

    def detokenize(self, tokens: Sequence[str]) -> str:
        pieces = [t for t in tokens if t not in MARIAN_SPECIALS]
        return self.decode_sp.decode_pieces(pieces).replace(SPIECE_UNDERLINE, " ").strip()


class FairseqTokenizer:
    def __init__(self, settings: dict[str, Any], directory: Path, error: type[Exception]) -> None:
        self.source, self.bpe = settings["side"] == "source", settings.get("bpe", "none")
        model = settings.get("model_file")
        self.sp = None if model is None else _processor(directory, model, error)

    def tokenize(self, text: str) -> list[str]:
        tokens = self.sp.encode(text, out_type=str) if self.sp is not None else text.split()
        return tokens + ([EOS] if self.source else [])

    def detokenize(self, tokens: Sequence[str]) -> str:
        text = " ".join(tokens)
        if self.bpe == "subword_nmt":
            return (text + " ").replace("@@ ", "").rstrip()
        if self.bpe == "sentencepiece":
            return text.replace(" ", "").replace(SPIECE_UNDERLINE, " ").strip()
        return text


IMPORTED = {"marian": MarianTokenizer, "fairseq": FairseqTokenizer}
