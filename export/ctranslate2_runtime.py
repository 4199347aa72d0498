"""Translate text with a CTranslate2 export (export/ctranslate2_export.py): our tokenizers around ctranslate2.

CTranslate2 reads and writes tokens; `CT2Translator` turns text into them and back with the export's own front
end (export/text.py, from `s2s_jax.json`), so its output is comparable with `s2s-jax translate` and the ONNX
runtime. Lengths: a row may produce a * source length + b tokens, eos included, as everywhere else here; ours
forces eos on that last step, so a row shows at most limit - 1 tokens. CTranslate2 takes one bound per call, so
each batch decodes to its largest row's bound and every row is cut at its own: for greedy search that is exactly
the per-row rule (a greedy row's tokens do not depend on its bound); beam search differs only for rows that reach
their bound. Imports numpy, ctranslate2 and export.text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from export.text import TextFrontEnd, TranslationError, Vocab

FRONT_END_FILE = "s2s_jax.json"
FORMAT = "s2s-jax-ctranslate2"


class CT2Translator:
    """A `ctranslate2.Translator` with the export's tokenizers and length rule."""

    def __init__(self, record: dict[str, Any], translator: Any, directory: str | Path) -> None:
        self.record, self.translator = record, translator
        vocab = record["vocab"]
        self.front = TextFrontEnd(record["tokenizer"], Vocab(vocab["src"]), Vocab(vocab["tgt"]), directory)
        self.max_positions = int(record["max_positions"])

    @classmethod
    def load(cls, out: str | Path, *, compute_type: str = "default", threads: int = 0) -> CT2Translator:
        """Open the CTranslate2 export in `out` on the CPU; compute_type e.g. "float32" or "int8" (CTranslate2
        quantizes an fp32 model on load); threads: intra-op threads (0: CTranslate2's default)."""
        try:
            import ctranslate2
        except ImportError:
            raise TranslationError("this export needs ctranslate2: pip install ctranslate2") from None
        path = Path(out) / FRONT_END_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TranslationError(f"{path} is missing; is {out} written by `s2s-jax export --format "
                                   "ctranslate2`?") from None
        if record.get("format") != FORMAT:
            raise TranslationError(f"{path} is not an s2s-jax CTranslate2 export")
        translator = ctranslate2.Translator(str(out), device="cpu", compute_type=compute_type,
                                            intra_threads=threads)
        return cls(record, translator, out)

    def tokens(self, text: str) -> list[str]:
        tokens = self.front.src_tok.tokenize(text)
        if not tokens:
            raise TranslationError(f"input {text!r} has no tokens to translate")
        return tokens

    def limits(self, lengths: Sequence[int]) -> np.ndarray:
        """[B] most tokens a row may produce, eos included: a * length + b, capped by the positions the model has
        (the learned table's, or the sinusoidal table written for CTranslate2), as `s2s-jax translate` caps it."""
        return np.minimum(self.front.row_limits(np.asarray(lengths)), self.max_positions)

    def decode_ids(self, batch: list[list[str]], *, beam: int = 1, alpha: float = 0.0, n_best: int = 1,
                   limits: np.ndarray | None = None, forced_len: int | None = None) -> list[list[list[int]]]:
        """Output target ids for source token lists, n_best per row, each cut at its row's bound (`limits`, default
        `self.limits`) and ended with eos when it fits (ours always ends so: eos is forced on the last allowed
        step), as our searches give. `forced_len`: every hypothesis exactly that many tokens, no eos (benchmarks)."""
        if forced_len is not None:
            results = self.translator.translate_batch(batch, beam_size=beam, num_hypotheses=n_best,
                                                      length_penalty=alpha, min_decoding_length=forced_len,
                                                      max_decoding_length=forced_len)
            index = self.front.tgt.index
            return [[[index[t] for t in hyp] for hyp in r.hypotheses] for r in results]
        limits = self.limits([len(t) for t in batch]) if limits is None else np.asarray(limits)
        results = self.translator.translate_batch(
            batch, beam_size=beam, num_hypotheses=n_best, length_penalty=alpha, min_decoding_length=0,
            max_decoding_length=max(int(limits.max()) - 1, 1), return_scores=False)  # eos may come first, as ours
        index, eos = self.front.tgt.index, self.front.tgt.id_of("eos")
        return [[[index[t] for t in hyp[: max(int(limit) - 1, 0)]] + [eos] for hyp in r.hypotheses]
                for r, limit in zip(results, limits, strict=True)]

    def translate(self, texts: Sequence[str], *, beam: int = 1, alpha: float = 0.0, batch_size: int = 32,
                  n_best: int = 1) -> list[str] | list[list[str]]:
        """Translations of `texts`, longest first in batches of `batch_size` (all inputs checked first)."""
        if not 1 <= n_best <= beam:
            raise TranslationError(f"n_best={n_best} must be between 1 and beam={beam}")
        rows = [self.tokens(t) for t in texts]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i]))
        out: list[Any] = [None] * len(rows)
        for start in range(0, len(rows), batch_size):
            picked = order[start:start + batch_size]
            hyps = self.decode_ids([rows[i] for i in picked], beam=beam, alpha=alpha, n_best=n_best)
            for i, h in zip(picked, hyps, strict=True):
                texts_i = [self.front.decode(x) for x in h]  # pad and bos dropped, as the vocab's decode does
                out[i] = texts_i if n_best > 1 else texts_i[0]
        return out
