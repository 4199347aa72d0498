"""Seed 002's character addition task: `12+34}` -> `_46}`, fixed width, generated in-process.

Format (seed 002): characters `0123456789+_{}`, a token's id is its position in
that string, so `_` = 11 is padding, `{` = 12 starts the decoder and `}` = 13
ends a sequence. With `digits` operand digits the source is `A+B` left-padded
with `_` to 2*digits+1 characters, then `}`; the target is the sum left-padded
to digits+1, then `}`; the decoder input is `{` followed by the target minus
its last token (teacher forcing).

`_` is a real token here (its position carries the place value), so every row
is full length and the loss mask comes from `tgt_lengths`, never from pad_id.

Problems are pairs (a, b) with 0 <= a, b < 10**digits. The held-out pairs are
drawn once from `seed` without enumerating the space (numpy's `choice` without
replacement uses a set when the space is large); training pairs are drawn
uniformly per step and redrawn if they are held out, so the two never meet.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError

CHARS = "0123456789+_{}"
MAX_DIGITS = 9  # a pair's key a * 10**digits + b must fit in int64
_LOOKUP = np.full(256, -1, np.int32)
_LOOKUP[np.frombuffer(CHARS.encode(), np.uint8)] = np.arange(len(CHARS))
_PROBLEM = re.compile(r"(\d+)\+(\d+)")


def addition_vocab() -> Vocab:
    """The seed's vocab: id = position in CHARS; pad `_`, bos `{`, eos `}`, and no unk
    (a character outside CHARS is an input error, not something to map to <unk>)."""
    return Vocab(list(CHARS), pad="_", bos="{", eos="}", unk=None)


def format_problem(a: int, b: int, digits: int) -> tuple[str, str]:
    """(`__2+3}`, `__5}`) for a=2, b=3, digits=2."""
    return f"{a}+{b}".rjust(2 * digits + 1, "_") + "}", str(a + b).rjust(digits + 1, "_") + "}"


def _ids(strings: Sequence[str]) -> np.ndarray:
    """Equal-length strings over CHARS -> int32 ids [N, len]."""
    raw = np.frombuffer("".join(strings).encode("ascii"), np.uint8)
    return _LOOKUP[raw].reshape(len(strings), -1)


class AdditionTask:
    """Batches, held-out set and string conversion for `digits`-digit addition."""

    name = "addition"

    def __init__(self, digits: int = 2, seed: int = 0, n_heldout: int | None = None) -> None:
        if not 1 <= digits <= MAX_DIGITS:
            raise UserError(f"addition: digits={digits} must be between 1 and {MAX_DIGITS}")
        self.digits = digits
        self.seed = seed
        self.space = 10 ** (2 * digits)
        self.n_heldout = min(1000, self.space // 10) if n_heldout is None else n_heldout
        if not 1 <= self.n_heldout <= self.space // 2:
            raise UserError(
                f"addition: n_heldout={self.n_heldout} must be between 1 and half the {self.space} "
                f"possible {digits}-digit problems"
            )
        self.src_vocab = self.tgt_vocab = addition_vocab()
        self.src_len = 2 * digits + 2
        self.tgt_len = digits + 2
        rng = np.random.default_rng([seed, 0])
        self.heldout_keys = rng.choice(self.space, self.n_heldout, replace=False).astype(np.int64)
        self._sorted_heldout = np.sort(self.heldout_keys)

    @property
    def max_decode_len(self) -> int:
        return self.tgt_len

    def settings(self) -> dict[str, Any]:
        return {"name": self.name, "digits": self.digits, "seed": self.seed, "n_heldout": self.n_heldout}

    def pairs(self, keys: np.ndarray) -> np.ndarray:
        """Keys a * 10**digits + b -> [N, 2] operands."""
        base = 10**self.digits
        return np.stack([keys // base, keys % base], axis=1)

    def is_heldout(self, keys: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted_heldout, keys)
        pos = np.minimum(pos, len(self._sorted_heldout) - 1)
        return self._sorted_heldout[pos] == keys

    def sample_train_keys(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n uniform training problems, none of them held out."""
        out = np.empty(0, np.int64)
        while len(out) < n:
            keys = rng.integers(0, self.space, 2 * (n - len(out)) + 8, dtype=np.int64)
            out = np.concatenate([out, keys[~self.is_heldout(keys)]])
        return out[:n]

    def batch(self, pairs: np.ndarray) -> dict[str, np.ndarray]:
        """[N, 2] operands -> src, src_lengths, tgt_in, tgt_out, tgt_lengths (int32)."""
        problems = [format_problem(int(a), int(b), self.digits) for a, b in pairs]
        src = _ids([p[0] for p in problems])
        tgt_out = _ids([p[1] for p in problems])
        bos = np.full((len(problems), 1), self.tgt_vocab.bos_id, np.int32)
        n = len(problems)
        return {
            "src": src,
            "src_lengths": np.full(n, self.src_len, np.int32),
            "tgt_in": np.concatenate([bos, tgt_out[:, :-1]], axis=1),
            "tgt_out": tgt_out,
            "tgt_lengths": np.full(n, self.tgt_len, np.int32),
        }

    def train_batch(self, step: int, batch_size: int) -> dict[str, np.ndarray]:
        """The batch for `step`: a function of (seed, step) only, so a run can resume anywhere."""
        rng = np.random.default_rng([self.seed, 1, step])
        return self.batch(self.pairs(self.sample_train_keys(rng, batch_size)))

    def heldout_batch(self) -> dict[str, np.ndarray]:
        return self.batch(self.pairs(self.heldout_keys))

    def parse(self, text: str) -> tuple[int, int]:
        """"12+35" -> (12, 35), or a UserError saying what is wrong with the string."""
        compact = "".join(text.split())
        m = _PROBLEM.fullmatch(compact)
        if m is None:
            raise UserError(f"{text!r} is not an addition problem: expected A+B with digits 0-9 only, e.g. 12+35")
        for operand in m.groups():
            if len(operand.lstrip("0") or "0") > self.digits:
                raise UserError(
                    f"{text!r}: operand {operand} has more than {self.digits} digits, "
                    f"and this model was trained on {self.digits}-digit addition"
                )
        return int(m.group(1)), int(m.group(2))

    def encode_inputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """User strings like "12+35" -> (src [N, src_len], src_lengths [N]); every string is checked first."""
        pairs = np.array([self.parse(t) for t in texts], np.int64).reshape(-1, 2)
        b = self.batch(pairs)
        return b["src"], b["src_lengths"]

    def decode_output(self, ids: Sequence[int]) -> str:
        """Decoded target ids (`_47}` ...) -> "47": cut at eos, padding dropped."""
        return "".join(self.tgt_vocab.decode(ids))

    def decode_input(self, ids: Sequence[int]) -> str:
        """Source ids (`_12+35}`) -> "12+35"."""
        return "".join(self.src_vocab.decode(ids))
