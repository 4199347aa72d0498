"""The tokenizers imported models come with: Hugging Face MarianTokenizer's and fairseq's text handling.

Like every tokenizer here they turn text into token *strings* for a `Vocab` (the model's own
vocabulary, in its id order). What they do beyond the plain kinds of `tokenizers`, because the
origin does it and the model was trained on it:
- the source side ends with the end-of-sentence token (`</s>`), which HF's MarianTokenizer
  appends in `build_inputs_with_special_tokens` and fairseq's `encode_line(append_eos=True)`;
- Marian: a leading language code `>>xx<<` is one token, the rest goes through the side's
  SentencePiece model (`source.spm` / `target.spm`); decoding drops the special tokens
  (`</s>`, `<unk>`, `<pad>`: `skip_special_tokens=True`), joins the pieces with SentencePiece and
  turns any remaining "▁" into spaces, stripped, as `MarianTokenizer.convert_tokens_to_string`
  does; with one shared vocabulary transformers decodes with the *source* model
  (`_decode_use_source_tokenizer` defaults to `not separate_vocabs`), so `decode_proto` is that one;
- fairseq: tokens are whitespace-separated (text already BPE'd, as fairseq-interactive without
  --bpe takes it) or SentencePiece pieces; decoding joins them and undoes the BPE as fairseq's
  `post_process` does ("subword_nmt": remove "@@ ", "sentencepiece": pieces to words).

export/text_imported.py mirrors both for the ONNX runtime (numpy and sentencepiece only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from s2s_jax.errors import UserError

SIDES = ("source", "target")
EOS = "</s>"
MARIAN_SPECIALS = ("</s>", "<unk>", "<pad>")
SPIECE_UNDERLINE = "\u2581"
BPE_KINDS = ("none", "subword_nmt", "sentencepiece")


def _processor(proto: bytes, what: str) -> Any:
    import sentencepiece as spm

    try:
        return spm.SentencePieceProcessor(model_proto=proto)
    except RuntimeError as e:
        raise UserError(f"{what} is not a SentencePiece model ({e})") from None


def _check_side(side: str) -> None:
    if side not in SIDES:
        raise UserError(f"tokenizer side {side!r} is not one of {SIDES}")


def split_language_code(text: str) -> tuple[list[str], str]:
    """(['>>fr<<'], rest) for a text that starts with a language code, else ([], text) (MarianTokenizer's rule)."""
    end = text.find("<<") if text.startswith(">>") else -1
    return ([text[: end + 2]], text[end + 2 :]) if end != -1 else ([], text)


class MarianTokenizer:
    """One side of a Hugging Face MarianTokenizer: its SentencePiece model and, for decoding, the one transformers
    decodes with (see the module docstring)."""

    kind = "marian"

    def __init__(self, model_proto: bytes, side: str, decode_proto: bytes | None = None) -> None:
        _check_side(side)
        self.model_proto, self.side = model_proto, side
        self.decode_proto = model_proto if decode_proto is None else decode_proto
        self.sp = _processor(model_proto, f"the {side} SentencePiece model")
        self.decode_sp = self.sp if decode_proto is None else _processor(decode_proto, "the decoding model")

    def tokenize(self, text: str) -> list[str]:
        code, rest = split_language_code(text)
        return code + self.sp.encode(rest, out_type=str) + ([EOS] if self.side == "source" else [])

    def detokenize(self, tokens: Sequence[str]) -> str:
        pieces = [t for t in tokens if t not in MARIAN_SPECIALS]
        return self.decode_sp.decode_pieces(pieces).replace(SPIECE_UNDERLINE, " ").strip()

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "side": self.side}


class FairseqTokenizer:
    """fairseq's text handling for one side: whitespace tokens or SentencePiece pieces, `post_process` on output."""

    kind = "fairseq"

    def __init__(self, side: str, bpe: str = "none", model_proto: bytes | None = None) -> None:
        _check_side(side)
        if bpe not in BPE_KINDS:
            raise UserError(f"fairseq bpe {bpe!r} is not one of {BPE_KINDS}")
        if (bpe == "sentencepiece") != (model_proto is not None):
            raise UserError("fairseq bpe 'sentencepiece' needs its model (--sentencepiece-model), and only it does")
        self.side, self.bpe, self.model_proto = side, bpe, model_proto
        self.sp = None if model_proto is None else _processor(model_proto, "the SentencePiece model")

    def tokenize(self, text: str) -> list[str]:
        tokens = self.sp.encode(text, out_type=str) if self.sp is not None else text.split()
        return tokens + ([EOS] if self.side == "source" else [])

    def detokenize(self, tokens: Sequence[str]) -> str:
        text = " ".join(tokens)
        if self.bpe == "subword_nmt":
            return (text + " ").replace("@@ ", "").rstrip()
        if self.bpe == "sentencepiece":
            return text.replace(" ", "").replace(SPIECE_UNDERLINE, " ").strip()
        return text

    def settings(self) -> dict[str, Any]:
        return {"kind": self.kind, "side": self.side, "bpe": self.bpe}
