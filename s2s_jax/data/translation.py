"""Translation on real text (`--data multi30k:de-en`, ...): the task interface of `s2s_jax.data.tasks`.

`TranslationTask.create(...)` reads the data (TFDS, see `datasets`), fits the
tokenizers and vocabs on the train split only, and tokenizes everything once.
`TranslationTask(**settings)` alone is the cheap form `build_task` makes when a
workdir is loaded: `load_files` then reads the tokenizers and vocabs saved
beside the model, and data is read only if a split is asked for (evaluate).

Training batches come from a `BucketBatcher` (few padded shapes, reshuffled
each epoch from the seed); batch `step` is a pure function of (seed, step), as
the training loop expects. The held-out set is the validation split (or, when
the data has none, the last 5% of train, at most 1000 pairs, left out of
training).

Decoding length: a row may produce at most `len_a * source_length + len_b` tokens.

A model whose tokenizers and vocabularies come with it (an imported checkpoint, s2s_jax/importers)
names them with `vocab_dir`, a directory holding vocab.json (`{"src": Vocab, "tgt": Vocab}`, the
workdir layout) and tokenizer.json with its files: `create` then reads the data with those instead
of fitting new ones. `data=""` is such a model without a dataset: it translates, and training or
evaluating it asks for one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from s2s_jax.data.batching import DEFAULT_BUCKETS, BucketBatcher, TokenBatches, bucket_width, pad_batch
from s2s_jax.data.datasets import DataSpec, load_splits, parse_spec
from s2s_jax.data.tokenizers import Tokenizer, load_tokenizer, make_tokenizer, save_tokenizer
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.json"


class TranslationTask:
    name = "translation"

    def __init__(
        self,
        data: str = "",
        *,
        data_dir: str | None = None,
        manual_dir: str | None = None,
        tokenizer: str = "word",
        lowercase: bool = False,
        regex: str | None = None,
        spm_vocab_size: int = 8000,
        spm_joint: bool = True,
        min_freq: int = 1,
        max_vocab: int | None = None,
        max_len: int | None = None,
        buckets: Sequence[int] = DEFAULT_BUCKETS,
        len_a: float = 1.5,
        len_b: int = 10,
        seed: int = 0,
        vocab_dir: str | None = None,
    ) -> None:
        self.spec: DataSpec | None = parse_spec(data) if data else None
        self.data = data
        self.vocab_dir = str(Path(vocab_dir).expanduser().resolve()) if vocab_dir else None
        # absolute, so a saved run finds its data from any working directory
        self.data_dir, self.manual_dir = (str(Path(d).expanduser().resolve()) if d else None
                                          for d in (data_dir, manual_dir))
        self.tokenizer_kind, self.lowercase, self.regex = tokenizer, lowercase, regex
        self.spm_vocab_size, self.spm_joint = spm_vocab_size, spm_joint
        self.buckets = tuple(sorted(int(b) for b in buckets))
        max_len = min(100, self.buckets[-1] - 1) if max_len is None else max_len  # default: 100, or what fits
        self.min_freq, self.max_vocab, self.max_len = min_freq, max_vocab, max_len
        self.len_a, self.len_b, self.seed = float(len_a), int(len_b), seed
        if max_len < 1 or max_len + 1 > max(self.buckets):
            raise UserError(f"max_len={max_len} must be >= 1 and leave room for eos in the largest bucket "
                            f"{max(self.buckets)}")
        if self.len_a < 0 or self.len_b < 1:
            raise UserError(f"decode length a*len+b needs a >= 0 and b >= 1, got a={len_a}, b={len_b}")
        self.src_tok: Tokenizer | None = None
        self.tgt_tok: Tokenizer | None = None
        self.src_vocab: Vocab | None = None
        self.tgt_vocab: Vocab | None = None
        self._train: tuple[list[np.ndarray], list[np.ndarray]] | None = None
        self._heldout: tuple[list[np.ndarray], list[np.ndarray]] | None = None
        # the held-out text pairs as read (validation BLEU scores against these, as `evaluate` does)
        self.heldout_pairs: list[tuple[str, str]] | None = None
        self._batchers: dict[int, BucketBatcher] = {}

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments; `vocab_dir` only when set (runs that fit their own vocab save as before)."""
        return {
            "name": self.name, "data": self.data, "data_dir": self.data_dir, "manual_dir": self.manual_dir,
            "tokenizer": self.tokenizer_kind, "lowercase": self.lowercase, "regex": self.regex,
            "spm_vocab_size": self.spm_vocab_size, "spm_joint": self.spm_joint, "min_freq": self.min_freq,
            "max_vocab": self.max_vocab, "max_len": self.max_len, "buckets": list(self.buckets),
            "len_a": self.len_a, "len_b": self.len_b, "seed": self.seed,
            **({"vocab_dir": self.vocab_dir} if self.vocab_dir else {}),
        }

    # ---- building from data ------------------------------------------------------------------------------
    @classmethod
    def create(cls, data: str, log: Any = print, **settings: Any) -> TranslationTask:
        """Read train and held-out data, fit tokenizers and vocabs on train, tokenize both."""
        task = cls(data, **settings)
        splits = task.read_splits(["train", "validation"], missing_ok=True)
        if "train" not in splits:
            raise UserError(f"{data}: the dataset has no train split to train on")
        train, heldout = splits["train"], splits.get("validation")
        if heldout is None:
            n = min(1000, max(1, len(train) // 20))
            if len(train) < 2:
                raise UserError(f"{data}: {len(train)} training pair(s); need at least 2 to hold one out")
            train, heldout = train[:-n], train[-n:]
            log(f"{data} has no validation split: holding out its last {n} training pairs")
        if task.vocab_dir:
            task.load_vocab_dir()
        else:
            task.fit([s for s, _ in train], [t for _, t in train])
        task._train = task._tokenize_pairs(train, drop_long=True, log=log)
        task._heldout = task._tokenize_pairs(heldout, drop_long=False, log=log)
        task.heldout_pairs = list(heldout)
        log(f"{data}: {len(task._train[0])} training pairs, {len(task._heldout[0])} held out; vocab "
            f"{len(task.src_vocab)} source / {len(task.tgt_vocab)} target ({task.tokenizer_kind} tokens)")
        return task

    def read_splits(self, splits: list[str], *, missing_ok: bool = False, data_dir: str | None = None,
                    manual_dir: str | None = None) -> dict[str, list[tuple[str, str]]]:
        """Text pairs of `splits` ("test" means the dataset's standard test split, e.g. test_2016)."""
        if self.spec is None:
            raise UserError("this model was set up without a dataset (imported without --data): import it again "
                            "with --data SPEC to train or evaluate it")
        kw = {"data_dir": data_dir or self.data_dir, "manual_dir": manual_dir or self.manual_dir}
        names = {s: (self.spec.default_test_split if s == "test" else s) for s in splits}
        loaded = load_splits(self.spec, list(names.values()), missing_ok=missing_ok, **kw)
        return {s: loaded[n] for s, n in names.items() if n in loaded}

    def fit(self, src_texts: list[str], tgt_texts: list[str]) -> None:
        """Tokenizers (SentencePiece trained here, jointly on both sides if spm_joint) and vocabs, from train text."""
        kw = {"lowercase": self.lowercase, "regex": self.regex, "vocab_size": self.spm_vocab_size}
        if self.tokenizer_kind == "spm" and self.spm_joint:
            self.src_tok = self.tgt_tok = make_tokenizer("spm", texts=src_texts + tgt_texts, **kw)
        else:
            self.src_tok = make_tokenizer(self.tokenizer_kind, texts=src_texts, **kw)
            self.tgt_tok = make_tokenizer(self.tokenizer_kind, texts=tgt_texts, **kw)
        src_seqs = [self.src_tok.tokenize(t) for t in src_texts]
        tgt_seqs = [self.tgt_tok.tokenize(t) for t in tgt_texts]
        opts = {"min_freq": self.min_freq, "max_size": self.max_vocab}
        if self.tokenizer_kind == "spm" and self.spm_joint:
            self.src_vocab = self.tgt_vocab = Vocab.build(src_seqs + tgt_seqs, **opts)
        else:
            self.src_vocab, self.tgt_vocab = Vocab.build(src_seqs, **opts), Vocab.build(tgt_seqs, **opts)

    def _tokenize_pairs(self, pairs: list[tuple[str, str]], *, drop_long: bool,
                        log: Any = print) -> tuple[list[np.ndarray], list[np.ndarray]]:
        src, tgt = [], []
        dropped = 0
        for s, t in pairs:
            si, ti = self.encode_source(s), self.encode_target(t)
            if drop_long and (len(si) > self.max_len or len(ti) > self.max_len):
                dropped += 1
                continue
            src.append(si)
            tgt.append(ti)
        if dropped:
            log(f"left out {dropped} training pairs longer than max_len={self.max_len} tokens")
        return src, tgt

    def load_vocab_dir(self) -> None:
        """The tokenizers and vocabularies saved in `vocab_dir` (instead of `fit`)."""
        path = Path(self.vocab_dir) / VOCAB_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            src, tgt = Vocab.from_dict(data["src"]), Vocab.from_dict(data["tgt"])
        except FileNotFoundError:
            raise UserError(f"{path} is missing: the model's vocabulary (vocab_dir) is gone") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
            raise UserError(f"{path} is not a vocab.json of src and tgt vocabularies ({e})") from None
        self.load_files(self.vocab_dir, src, tgt)

    # ---- workdir files -----------------------------------------------------------------------------------
    def save_files(self, directory: str | Path) -> None:
        """Write tokenizer.json (and SentencePiece models) next to the model; vocab.json is the workdir's."""
        self._require_fitted()
        directory = Path(directory)
        if self.src_tok is self.tgt_tok:
            both = save_tokenizer(self.src_tok, directory, "spm.joint")
            info = {"src": both, "tgt": both}
        else:
            info = {"src": save_tokenizer(self.src_tok, directory, "spm.src"),
                    "tgt": save_tokenizer(self.tgt_tok, directory, "spm.tgt")}
        (directory / TOKENIZER_FILE).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")

    def load_files(self, directory: str | Path, src_vocab: Vocab, tgt_vocab: Vocab) -> None:
        """Read the tokenizers a training run saved in `directory`; the vocabs are the workdir's vocab.json, which
        its one reader (`s2s_jax.run.workdir.read_vocab`) passes in."""
        directory = Path(directory)
        try:
            info = json.loads((directory / TOKENIZER_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise UserError(f"{e.filename} is missing; the workdir is incomplete") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{directory / TOKENIZER_FILE} is not valid JSON ({e})") from None
        try:
            self.src_tok = load_tokenizer(info["src"], directory)
            self.tgt_tok = self.src_tok if info["src"] == info["tgt"] else load_tokenizer(info["tgt"], directory)
        except (KeyError, TypeError) as e:
            raise UserError(f"{directory / TOKENIZER_FILE} lacks {e}; the workdir is corrupt") from None
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab

    def _require_fitted(self) -> None:
        if self.src_vocab is None or self.src_tok is None:
            raise UserError("this translation task has no tokenizer/vocab yet (create() it, or load_files())")

    # ---- the task interface ------------------------------------------------------------------------------
    def decode_limit(self, src_lengths: np.ndarray) -> np.ndarray:
        """[B] most tokens (eos included) each row may produce: a * source length + b."""
        return np.floor(self.len_a * np.asarray(src_lengths) + self.len_b).astype(np.int32)

    @property
    def max_decode_len(self) -> int:
        return int(self.decode_limit(np.array([self.max_len]))[0])

    def encode_source(self, text: str) -> np.ndarray:
        return np.asarray(self.src_vocab.encode(self.src_tok.tokenize(text)), np.int32)

    def encode_target(self, text: str) -> np.ndarray:
        return np.asarray(self.tgt_vocab.encode(self.tgt_tok.tokenize(text)), np.int32)

    def encode_inputs(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Source strings -> (src [N, width], src_lengths [N]), width the bucket of the longest."""
        self._require_fitted()
        rows = []
        for i, text in enumerate(texts):
            ids = self.encode_source(text)
            if len(ids) == 0:
                raise UserError(f"input {i + 1} ({text!r}) has no tokens to translate")
            rows.append(ids)
        width = bucket_width(max((len(r) for r in rows), default=1), self.buckets)
        b = pad_batch(rows, None, width, pad_id=self.src_vocab.pad_id, bos_id=0, eos_id=0)
        return b["src"], b["src_lengths"]

    def decode_output(self, ids: Sequence[int]) -> str:
        return self.tgt_tok.detokenize(self.tgt_vocab.decode(ids))

    def decode_input(self, ids: Sequence[int]) -> str:
        return self.src_tok.detokenize(self.src_vocab.decode(ids))

    def _batch(self, src: list[np.ndarray], tgt: list[np.ndarray], width: int) -> dict[str, np.ndarray]:
        v = self.tgt_vocab
        return pad_batch(src, tgt, width, pad_id=v.pad_id, bos_id=v.bos_id, eos_id=v.eos_id)

    def _lengths(self, src: list[np.ndarray], tgt: list[np.ndarray]) -> list[int]:
        return [max(len(s), len(t) + 1) for s, t in zip(src, tgt, strict=True)]

    def batcher(self, batch_size: int | TokenBatches) -> BucketBatcher:
        if self._train is None:
            raise UserError("this translation task was loaded from a workdir and has no training data")
        if batch_size not in self._batchers:
            self._batchers[batch_size] = BucketBatcher(self._lengths(*self._train), batch_size, self.buckets,
                                                       self.seed)
        return self._batchers[batch_size]

    def train_batch(self, step: int, batch_size: int | TokenBatches) -> dict[str, np.ndarray]:
        """Batch for training step `step` (steps count from 1; step 0, used for shapes at init, is batch 0);
        `batch_size` rows, or a `TokenBatches` rule (--max-tokens)."""
        width, idx = self.batcher(batch_size).batch_at(max(step - 1, 0))
        src, tgt = self._train
        return self._batch([src[i] for i in idx], [tgt[i] for i in idx], width)

    def heldout_batch(self) -> dict[str, np.ndarray]:
        if self._heldout is None:
            raise UserError("this translation task was loaded from a workdir and has no held-out data")
        src, tgt = self._heldout
        return self._batch(src, tgt, bucket_width(max(self._lengths(src, tgt)), self.buckets))

    def shape_batch(self) -> dict[str, np.ndarray]:
        """A one-row batch of the smallest shape: enough for `init`/`eval_shape`, needs no data."""
        one = [np.zeros(1, np.int32)]
        return self._batch(one, one, self.buckets[0])

    @property
    def pretokenized(self) -> bool:
        return self.spec is not None and self.spec.pretokenized
