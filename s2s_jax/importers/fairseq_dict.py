"""fairseq's `dict.*.txt` vocabularies, read into a `Vocab` and written back byte for byte.

fairseq's `Dictionary` numbers `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3, then the file's lines in order, one
`word count` per line (`#fairseq:overwrite` lines redefine a word, which this reader refuses rather than
guess at). Translation in fairseq starts the decoder with `</s>` (its SequenceGenerator's first token, and
`prev_output_tokens` in training), so that is the bos role here; pad and eos are fairseq's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError

SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")


@dataclasses.dataclass
class FairseqDict:
    """A dict.txt: its `Vocab` (fairseq's ids) and each word's count, in file order."""

    vocab: Vocab
    counts: list[int]

    def to_text(self) -> str:
        """The file fairseq's `Dictionary.save` writes for these words and counts."""
        words = self.vocab.tokens[len(SPECIALS):]
        return "".join(f"{w} {c}\n" for w, c in zip(words, self.counts, strict=True))


def parse_dict(text: str, source: str) -> FairseqDict:
    """The vocabulary of a dict.txt's `text` (`source` names the file in errors)."""
    words, counts = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        parts = line.rstrip().rsplit(" ", 1)
        if parts[-1] == "#fairseq:overwrite":
            raise UserError(f"{source}:{n}: '#fairseq:overwrite' entries are not supported")
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise UserError(f"{source}:{n}: expected 'word count', got {line!r}")
        word, count = parts
        if word in SPECIALS or word in words:
            raise UserError(f"{source}:{n}: duplicate word {word!r} (fairseq refuses it too)")
        words.append(word)
        counts.append(int(count))
    vocab = Vocab(list(SPECIALS) + words, pad="<pad>", bos="</s>", eos="</s>", unk="<unk>")
    return FairseqDict(vocab, counts)


def read_dict(path: str | Path) -> FairseqDict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path} is missing; give --dict-dir (the directory of dict.SRC.txt and dict.TGT.txt)") \
            from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 ({e})") from None
    return parse_dict(text, str(path))


def write_dict(d: FairseqDict, path: str | Path) -> None:
    Path(path).write_text(d.to_text(), encoding="utf-8")
