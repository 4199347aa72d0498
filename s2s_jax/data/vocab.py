"""Token <-> id mapping with the four special roles (pad, bos, eos, unk), saved as JSON.

A `Vocab` is a list of tokens in id order plus the symbols that play the special
roles. Any role may be absent (None): the addition task has no unk, so an unknown
character is an error instead of being silently mapped to <unk>. Ids of the
specials are wherever their symbols sit in the list, so a model config's
pad_id/bos_id/eos_id come from the vocab, never the other way round.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from s2s_jax.errors import UserError

ROLES = ("pad", "bos", "eos", "unk")


class Vocab:
    def __init__(
        self,
        tokens: Sequence[str],
        *,
        pad: str | None = "<pad>",
        bos: str | None = "<bos>",
        eos: str | None = "<eos>",
        unk: str | None = "<unk>",
    ) -> None:
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            dup = [t for t, n in collections.Counter(self.tokens).items() if n > 1]
            raise UserError(f"vocab has duplicate tokens {dup[:5]}")
        self.specials = {"pad": pad, "bos": bos, "eos": eos, "unk": unk}
        for role, sym in self.specials.items():
            if sym is not None and sym not in self.index:
                raise UserError(f"vocab: the {role} symbol {sym!r} is not one of its tokens")

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        order: Sequence[str] = ROLES,
        **symbols: str | None,
    ) -> Vocab:
        """Specials first (in `order`, default pad=0, bos=1, eos=2, unk=3, matching ModelConfig's
        defaults), then tokens seen at least `min_freq` times, most frequent first, ties by token
        so the result is deterministic. `symbols` overrides a role's symbol or drops it with None."""
        if sorted(order) != sorted(ROLES):
            raise UserError(f"vocab order must be a permutation of {ROLES}, got {tuple(order)}")
        unknown = set(symbols) - set(ROLES)
        if unknown:
            raise UserError(f"unknown special role(s) {sorted(unknown)}; roles are {ROLES}")
        defaults = {"pad": "<pad>", "bos": "<bos>", "eos": "<eos>", "unk": "<unk>"}
        specials = {role: symbols.get(role, defaults[role]) for role in ROLES}
        counts = collections.Counter(tok for seq in sequences for tok in seq)
        head = [specials[r] for r in order if specials[r] is not None]
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in head), key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(head))]
        return cls(head + kept, **specials)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.to_dict() == other.to_dict()

    def _id(self, role: str) -> int | None:
        sym = self.specials[role]
        return None if sym is None else self.index[sym]

    @property
    def pad_id(self) -> int | None:
        return self._id("pad")

    @property
    def bos_id(self) -> int | None:
        return self._id("bos")

    @property
    def eos_id(self) -> int | None:
        return self._id("eos")

    @property
    def unk_id(self) -> int | None:
        return self._id("unk")

    def encode(self, tokens: Iterable[str], *, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of `tokens`; out-of-vocabulary tokens become unk, or are an error when there is no unk."""
        ids = []
        for tok in tokens:
            i = self.index.get(tok, self.unk_id)
            if i is None:
                raise UserError(f"{tok!r} is not in the vocabulary (which has no unk token); valid: {self.tokens}")
            ids.append(i)
        if bos:
            ids.insert(0, self._required("bos"))
        if eos:
            ids.append(self._required("eos"))
        return ids

    def _required(self, role: str) -> int:
        i = self._id(role)
        if i is None:
            raise UserError(f"this vocabulary has no {role} token")
        return i

    def decode(self, ids: Iterable[int], *, stop_at_eos: bool = True, strip_specials: bool = True) -> list[str]:
        """Tokens of `ids`, cut at the first eos; pad/bos/eos dropped unless `strip_specials=False`."""
        drop = {self.pad_id, self.bos_id, self.eos_id} - {None}
        out = []
        for i in ids:
            i = int(i)
            if stop_at_eos and i == self.eos_id:
                break
            if strip_specials and i in drop:
                continue
            out.append(self.tokens[i])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "specials": dict(self.specials)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocab:
        try:
            return cls(data["tokens"], **data["specials"])
        except (KeyError, TypeError) as e:
            raise UserError(f"malformed vocab data (expected 'tokens' and 'specials'): {e}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"vocab file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"vocab file {path} is not valid JSON: {e}") from None
        return cls.from_dict(data)
