"""TFDS builder for Multi30k task 1 (image-caption translation, en/de/fr/cs), written as ArrayRecord.

Configs are ordered language pairs and a variant: `de-en` (raw text, as released)
and `de-en-tok` (the official lowercased, normalized, tokenized `lc.norm.tok`
files). Splits: train (29,000), validation (1,014), test_2016 (1,000), and
test_2017, test_2017_mscoco, test_2018 when both languages have them.

Files come from `manual_dir` when it holds them (names as in the official
repository, `train.de.gz`, `val.lc.norm.tok.en`, each with or without .gz),
otherwise they are downloaded from the official multi30k/dataset repository.
Records keep file order (shuffling disabled) with the line number as key, so
hypotheses written in record order line up with the reference files.

Preparing and reading need no TensorFlow: `GeneratorBasedBuilder` with
`file_format="array_record"`, read back with `tfds.data_source`.
"""

from __future__ import annotations

import itertools
import socket
from pathlib import Path
from urllib.parse import urlparse

import tensorflow_datasets as tfds

from s2s_jax.data.datasets import MULTI30K_LANGS as LANGS
from s2s_jax.data.datasets import MULTI30K_VARIANTS as VARIANTS
from s2s_jax.data.textfiles import read_parallel
from s2s_jax.errors import UserError

URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1"
# split name -> official file stem, and the languages released for it
SPLITS = {
    "train": ("train", LANGS),
    "validation": ("val", LANGS),
    "test_2016": ("test_2016_flickr", LANGS),
    "test_2017": ("test_2017_flickr", ("en", "de", "fr")),
    "test_2017_mscoco": ("test_2017_mscoco", ("en", "de", "fr")),
    "test_2018": ("test_2018_flickr", LANGS),
}
REQUIRED = ("train", "validation", "test_2016")
OFFLINE_HINT = ("without network, put the files in a directory and pass it as the manual dir (--manual-dir; "
                "names as in the official repository, e.g. train.de.gz, val.en.gz, test_2016_flickr.de.gz)")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds when the download host cannot be reached: TFDS's downloader retries a dead network for
    minutes before it gives up, with no word of the manual dir."""
    host = urlparse(address)
    try:
        socket.create_connection((host.hostname, host.port or 443), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"Multi30k is not in the manual dir and {host.hostname} cannot be reached ({e}); "
                        f"{OFFLINE_HINT}") from None
DEFAULT_TEST = "test_2016"


def file_name(stem: str, lang: str, variant: str) -> str:
    """The official name: raw files are gzipped (`train.de.gz`), tokenized ones are not (`train.lc.norm.tok.de`)."""
    return f"{stem}.{lang}.gz" if variant == "raw" else f"{stem}.lc.norm.tok.{lang}"


def url(stem: str, lang: str, variant: str) -> str:
    return f"{URL}/{'raw' if variant == 'raw' else 'tok'}/{file_name(stem, lang, variant)}"


def find_local(directory: Path, stem: str, lang: str, variant: str) -> Path | None:
    """The file in `directory`, accepting it gzipped or not whatever the official name says."""
    name = file_name(stem, lang, variant).removesuffix(".gz")
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def local_split(manual_dir: str | Path | None, split: str, src: str, tgt: str,
                variant: str) -> list[tuple[str, str]] | None:
    """The pairs of `split` read straight from `manual_dir`, when both its files are there: the extra test sets
    (test_2017, test_2017_mscoco, test_2018) a user adds after the training data was prepared are evaluated
    without preparing the dataset again. None when the split or its files are not there."""
    if manual_dir is None or split not in SPLITS:
        return None
    stem, langs = SPLITS[split]
    if src not in langs or tgt not in langs:
        return None
    paths = [find_local(Path(manual_dir), stem, lang, variant) for lang in (src, tgt)]
    if None in paths:
        return None
    return read_parallel(*paths)


class Multi30kConfig(tfds.core.BuilderConfig):
    def __init__(self, *, src: str, tgt: str, variant: str) -> None:
        name = f"{src}-{tgt}" + ("-tok" if variant == "tok" else "")
        super().__init__(name=name, description=f"Multi30k {src}->{tgt}, {variant} text")
        self.src, self.tgt, self.variant = src, tgt, variant


class Multi30k(tfds.core.GeneratorBasedBuilder):
    """Multi30k task 1 as (source, target) text pairs."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Task 1 from the official multi30k/dataset repository."}
    BUILDER_CONFIGS = [
        Multi30kConfig(src=a, tgt=b, variant=v) for a, b in itertools.permutations(LANGS, 2) for v in VARIANTS
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the Multi30k task-1 files (e.g. train.de.gz, val.en.gz, test_2016_flickr.de.gz, or the "
        "*.lc.norm.tok.* files for the -tok configs) in one directory and pass it as manual_dir."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        c = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description="Multi30k: multilingual English-German-French-Czech image descriptions (task 1).",
            features=tfds.features.FeaturesDict({c.src: tfds.features.Text(), c.tgt: tfds.features.Text()}),
            supervised_keys=(c.src, c.tgt),
            homepage="https://github.com/multi30k/dataset",
            disable_shuffling=True,
        )

    def _manual_files(self, dl_manager: tfds.download.DownloadManager) -> dict[str, dict[str, Path]] | None:
        """{split: {lang: path}} from manual_dir, or None when it lacks a required file."""
        try:
            directory = Path(dl_manager.manual_dir)
        except AssertionError:  # no manual_dir given, or it is empty
            return None
        c = self.builder_config
        found: dict[str, dict[str, Path]] = {}
        for split, (stem, _) in SPLITS.items():
            paths = {lang: find_local(directory, stem, lang, c.variant) for lang in (c.src, c.tgt)}
            if all(paths.values()):
                found[split] = paths  # type: ignore[assignment]
            elif split in REQUIRED:
                return None
        return found

    def _download_files(self, dl_manager: tfds.download.DownloadManager) -> dict[str, dict[str, Path]]:
        c = self.builder_config
        urls = {
            f"{split}.{lang}": url(stem, lang, c.variant)
            for split, (stem, langs) in SPLITS.items()
            if c.src in langs and c.tgt in langs
            for lang in (c.src, c.tgt)
        }
        check_reachable(URL)
        try:
            paths = dl_manager.download(urls)
        except Exception as e:  # network errors come in many types; all mean the same thing here
            raise UserError(f"cannot download Multi30k ({type(e).__name__}: {e}); {OFFLINE_HINT}") from None
        out: dict[str, dict[str, Path]] = {}
        for key, path in paths.items():
            split, lang = key.split(".")
            out.setdefault(split, {})[lang] = Path(path)
        return out

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):  # noqa: ANN202 (tfds's own types)
        files = self._manual_files(dl_manager) or self._download_files(dl_manager)
        c = self.builder_config
        return {split: self._generate_examples(paths[c.src], paths[c.tgt]) for split, paths in files.items()}

    def _generate_examples(self, src_path: Path, tgt_path: Path):  # noqa: ANN202
        c = self.builder_config
        for i, (src, tgt) in enumerate(read_parallel(src_path, tgt_path)):
            yield i, {c.src: src, c.tgt: tgt}
