"""`--data` specs -> (source, target) text pairs per split, through TFDS data sources (no TensorFlow).

Specs:
    multi30k:de-en          Multi30k raw text, German -> English (any two of en, de, fr, cs)
    multi30k:de-en:tok      the lowercased, normalized, tokenized variant (`lc.norm.tok`)
    parallel_text:SRC,TGT   two aligned local files (or one TSV); with splits:
                            parallel_text:train=a.de,a.en;validation=v.de,v.en;test=t.de,t.en
    tfds:NAME/CONFIG        a TFDS registry dataset such as tfds:wmt14_translate/de-en (downloads when
                            online); its supervised keys give the direction, or tfds:NAME/CONFIG:en-de

Each is prepared once as ArrayRecord under `data_dir` (TFDS's default when None)
and read back with `tfds.data_source` / `as_data_source`, which need no TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2s_jax.errors import UserError

KINDS = ("multi30k", "parallel_text", "tfds")
MULTI30K_LANGS = ("en", "de", "fr", "cs")  # here, not in multi30k.py, so parsing a spec does not import tfds
MULTI30K_VARIANTS = ("raw", "tok")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    kind: str
    name: str  # multi30k: "de-en"; parallel_text: the file spec; tfds: "wmt14_translate/de-en"
    variant: str = "raw"  # multi30k only
    direction: tuple[str, str] | None = None  # tfds only: (source key, target key) overriding supervised keys

    @property
    def default_test_split(self) -> str:
        return "test_2016" if self.kind == "multi30k" else "test"

    @property
    def pretokenized(self) -> bool:
        """Whether the text is already tokenized (so BLEU must not tokenize again)."""
        return self.kind == "multi30k" and self.variant == "tok"


def parse_spec(text: str) -> DataSpec:
    kind, sep, rest = text.partition(":")
    if not sep or kind not in KINDS or not rest:
        raise UserError(
            f"--data {text!r}: expected multi30k:SRC-TGT[:tok], parallel_text:SRC_FILE,TGT_FILE or tfds:NAME/CONFIG"
        )
    if kind == "parallel_text":
        return DataSpec(kind, rest)
    if kind == "multi30k":
        pair, _, variant = rest.partition(":")
        variant = variant or "raw"
        src, _, tgt = pair.partition("-")
        langs = MULTI30K_LANGS
        if src not in langs or tgt not in langs or src == tgt or variant not in MULTI30K_VARIANTS:
            raise UserError(f"--data {text!r}: expected multi30k:SRC-TGT[:tok] with SRC, TGT two of {langs}")
        return DataSpec(kind, pair, variant)
    name, _, direction = rest.partition(":")
    pair = None
    if direction:
        a, _, b = direction.partition("-")
        if not a or not b:
            raise UserError(f"--data {text!r}: the direction after the second colon must be SRC-TGT, e.g. en-de")
        pair = (a, b)
    return DataSpec(kind, name, direction=pair)


@contextlib.contextmanager
def preparing(data_dir: str | Path | None) -> Iterator[None]:
    """Hold the data dir's preparation lock: one process at a time prepares (or checks) datasets there.

    Why: two `train` processes started together on an unprepared dataset would otherwise both write it, and
    the second to finish fails renaming its copy onto the first's (tfds raises FileExistsError). Behind the
    lock the second finds the dataset prepared and only reads it. An flock is dropped by the kernel when its
    holder dies, so a killed preparation never leaves the lock held.
    """
    if data_dir is None:
        from tensorflow_datasets.core import constants

        data_dir = constants.get_default_data_dir()
    try:
        directory = Path(data_dir).expanduser()
        directory.mkdir(parents=True, exist_ok=True)
        f = open(directory / ".s2s-jax-prepare.lock", "a")  # noqa: SIM115 (closed below)
    except OSError:  # a read-only data dir of prepared datasets: nothing will be written there, no lock needed
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _open(spec: DataSpec, data_dir: str | None, manual_dir: str | None) -> tuple[Any, tuple[str, str]]:
    """(split name -> data source, (source key, target key)), preparing the ArrayRecord files first if needed."""
    import tensorflow_datasets as tfds

    tfds.disable_progress_bar()
    prepare = {"download_config": tfds.download.DownloadConfig(manual_dir=manual_dir)}
    if spec.kind == "parallel_text":
        from s2s_jax.data.parallel_text import ParallelText, ParallelTextConfig

        builder = ParallelText(config=ParallelTextConfig.from_spec(spec.name), data_dir=data_dir,
                               file_format="array_record")
        with preparing(data_dir):
            builder.download_and_prepare(**prepare)
        return (lambda split: builder.as_data_source(split=split)), ("source", "target")
    if spec.kind == "multi30k":
        importlib.import_module("s2s_jax.data.multi30k")  # registers the builder under its name
        name = f"multi30k/{spec.name}" + ("-tok" if spec.variant == "tok" else "")
    else:
        importlib.import_module("tensorflow_datasets.translate")  # tfds imports its builders lazily
        name = spec.name
    # file_format must be explicit: with a data_dir, tfds would otherwise fall back to TFRecord (needs TensorFlow)
    kwargs = {"data_dir": data_dir, "try_gcs": False, "builder_kwargs": {"file_format": "array_record"}}
    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except Exception as e:  # tfds raises several types (DatasetNotFoundError, ValueError...) for a bad name
        raise UserError(f"--data {spec.kind}:{spec.name}: no such TFDS dataset ({str(e).splitlines()[0]})") from None
    keys = spec.direction or builder.info.supervised_keys
    if not keys or len(keys) != 2:
        raise UserError(f"--data tfds:{name} has no (source, target) supervised keys; add :SRC-TGT to the spec")

    def open_split(split: str) -> Any:
        with preparing(data_dir):
            return tfds.data_source(name, split=split, download=True, download_and_prepare_kwargs=prepare, **kwargs)

    return open_split, (str(keys[0]), str(keys[1]))


def _multi30k_local(spec: DataSpec, split: str, manual_dir: str | Path | None) -> list[tuple[str, str]] | None:
    """A Multi30k split the prepared dataset lacks, read from the manual dir if its files are there now."""
    if spec.kind != "multi30k":
        return None
    from s2s_jax.data.multi30k import local_split

    src, _, tgt = spec.name.partition("-")
    return local_split(manual_dir, split, src, tgt, spec.variant)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def load_splits(
    spec: DataSpec, splits: list[str], *, data_dir: str | Path | None = None, manual_dir: str | Path | None = None,
    missing_ok: bool = False,
) -> dict[str, list[tuple[str, str]]]:
    """{split: [(source, target), ...] in record order} for each of `splits`; a split the dataset lacks is an
    error, or left out with `missing_ok`."""
    open_split, (src_key, tgt_key) = _open(spec, None if data_dir is None else str(data_dir),
                                           None if manual_dir is None else str(manual_dir))
    out = {}
    for split in splits:
        try:
            ds = open_split(split)
        except UserError:  # preparing the dataset failed (bad files, no network): not a missing split
            raise
        except (ValueError, KeyError) as e:  # tfds: unknown split
            local = _multi30k_local(spec, split, manual_dir)
            if local is not None:
                out[split] = local
                continue
            if missing_ok:
                continue
            raise UserError(f"dataset {spec.kind}:{spec.name} has no split {split!r} "
                            f"({str(e).splitlines()[0][:300]})") from None
        records = [ds[i] for i in range(len(ds))]
        try:
            out[split] = [(_text(r[src_key]), _text(r[tgt_key])) for r in records]
        except KeyError as e:
            raise UserError(f"dataset {spec.kind}:{spec.name} has no feature {e}; features: {sorted(records[0])}") \
                from None
    return out
