"""TFDS builders (multi30k, parallel_text) prepared as ArrayRecord and read back without TensorFlow;
strict file checks; registry datasets through tfds.testing.mock_data."""

import gzip
import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from s2s_jax.data.datasets import load_splits, parse_spec, preparing
from s2s_jax.errors import UserError

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "multi30k"
ROOT = Path(__file__).resolve().parents[2]

DE = ["Ein Hund läuft .", "Zwei Männer essen .", "Eine Frau singt ."]
EN = ["A dog runs .", "Two men eat .", "A woman sings ."]


def write_multi30k(directory: Path) -> Path:
    """Tiny files with the official names: raw gzipped, tokenized plain (as in the official repository)."""
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", 3), ("val", 2), ("test_2016_flickr", 1)):
        for lang, lines in (("de", DE), ("en", EN)):
            (directory / f"{stem}.{lang}.gz").write_bytes(gzip.compress("\n".join(lines[:n]).encode() + b"\n"))
            (directory / f"{stem}.lc.norm.tok.{lang}").write_text("\n".join(x.lower() for x in lines[:n]) + "\n")
    return directory


def test_multi30k_from_generated_files_both_variants(tmp_path):
    manual = write_multi30k(tmp_path / "m30k")
    raw = load_splits(parse_spec("multi30k:de-en"), ["train", "validation", "test_2016"], data_dir=tmp_path / "d",
                      manual_dir=manual)
    assert raw["train"] == list(zip(DE, EN, strict=True))  # file order kept
    assert len(raw["validation"]) == 2 and raw["test_2016"] == [(DE[0], EN[0])]
    tok = load_splits(parse_spec("multi30k:en-de:tok"), ["train"], data_dir=tmp_path / "d", manual_dir=manual)
    assert tok["train"][1] == ("two men eat .", "zwei männer essen .")
    with pytest.raises(UserError, match="no split 'test_2017'"):
        load_splits(parse_spec("multi30k:de-en"), ["test_2017"], data_dir=tmp_path / "d", manual_dir=manual)


def test_extra_multi30k_test_sets_come_from_the_manual_dir(tmp_path):
    """test_2018 added to the manual dir after the data was prepared: read from its files, no re-preparation."""
    manual = write_multi30k(tmp_path / "m30k")
    spec = parse_spec("multi30k:de-en")
    load_splits(spec, ["train"], data_dir=tmp_path / "d", manual_dir=manual)  # prepared without test_2018
    prepared = sorted(p.name for p in (tmp_path / "d").rglob("*") if p.is_file())
    for lang, lines in (("de", DE[::-1]), ("en", EN[::-1])):
        (manual / f"test_2018_flickr.{lang}.gz").write_bytes(gzip.compress("\n".join(lines).encode() + b"\n"))
    got = load_splits(spec, ["test_2018", "test_2016"], data_dir=tmp_path / "d", manual_dir=manual)
    assert got["test_2018"] == list(zip(DE[::-1], EN[::-1], strict=True)) and got["test_2016"] == [(DE[0], EN[0])]
    assert sorted(p.name for p in (tmp_path / "d").rglob("*") if p.is_file()) == prepared  # nothing re-prepared
    with pytest.raises(UserError, match="no split 'test_2017'"):  # its files are not there
        load_splits(spec, ["test_2017"], data_dir=tmp_path / "d", manual_dir=manual)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is not None,
                    reason="TensorFlow is installed here; this checks the environment `make install` builds")
def test_multi30k_reads_without_tensorflow(tmp_path):
    """Prepare and read in a fresh interpreter in which `import tensorflow` fails (it is not installed)."""
    manual = write_multi30k(tmp_path / "m30k")
    script = textwrap.dedent(f"""
        import sys
        try:
            import tensorflow
            raise SystemExit("tensorflow is importable")
        except ModuleNotFoundError:
            pass
        from s2s_jax.data.datasets import load_splits, parse_spec
        d = load_splits(parse_spec("multi30k:de-en"), ["train", "test_2016"], data_dir={str(tmp_path / 'd')!r},
                        manual_dir={str(manual)!r})
        assert len(d["train"]) == 3 and d["test_2016"][0][1] == "A dog runs .", d
        assert not any(m == "tensorflow" or m.startswith("tensorflow.") for m in sys.modules)
        import glob
        assert glob.glob({str(tmp_path / 'd')!r} + "/multi30k/de-en/1.0.0/*.array_record-*"), "no ArrayRecord files"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_a_second_process_waits_for_the_first_to_prepare(tmp_path):
    """While one process holds the data dir's preparation lock, another touches nothing there; once it is
    released, the other prepares and reads. (Two unserialized preparations of one dataset fail: the second
    rename finds the first's directory.)"""
    manual, data = write_multi30k(tmp_path / "m30k"), tmp_path / "d"
    script = textwrap.dedent(f"""
        import s2s_jax.data.multi30k, tensorflow_datasets  # the slow imports, before saying ready
        from s2s_jax.data.datasets import load_splits, parse_spec
        print("ready", flush=True)
        d = load_splits(parse_spec("multi30k:de-en"), ["train"], data_dir={str(data)!r}, manual_dir={str(manual)!r})
        print(len(d["train"]))
    """)
    with preparing(data):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(2)
        assert proc.poll() is None and not (data / "multi30k").exists()
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.splitlines()[-1] == "3"
    again = load_splits(parse_spec("multi30k:de-en"), ["train"], data_dir=data, manual_dir=manual)
    assert again["train"][0] == (DE[0], EN[0])


@pytest.mark.skipif(not (SHARED / "train.de.gz").exists(), reason="no local Multi30k copy in ../shared/data")
def test_multi30k_real_files(tmp_path):
    d = load_splits(parse_spec("multi30k:de-en:tok"), ["train", "validation", "test_2016"], data_dir=tmp_path,
                    manual_dir=SHARED)
    assert [len(d[s]) for s in ("train", "validation", "test_2016")] == [29000, 1014, 1000]
    assert d["test_2016"][0][1] == "a man in an orange hat starring at something ."


def test_parallel_text_files_and_tsv(tmp_path):
    (tmp_path / "a.de").write_text("\n".join(DE) + "\n")
    (tmp_path / "a.en").write_text("\n".join(EN))  # no final newline is fine
    (tmp_path / "t.tsv").write_text("".join(f"{d}\t{e}\n" for d, e in zip(DE, EN, strict=True)))
    spec = parse_spec(f"parallel_text:train={tmp_path / 'a.de'},{tmp_path / 'a.en'};test={tmp_path / 't.tsv'}")
    d = load_splits(spec, ["train", "test"], data_dir=tmp_path / "d")
    assert d["train"] == d["test"] == list(zip(DE, EN, strict=True))


@pytest.mark.parametrize(
    "src, tgt, message",
    [(b"a\nb\nc\n", b"x\ny\n", "has 3 lines but"),
     (b"a\n\nc\n", b"x\ny\nz\n", ".de:2: empty line"),
     (b"a\nb\xff\nc\n", b"x\ny\nz\n", ".de:2: not UTF-8"),
     (b"a\nb\nc\n", b"x\ny\n \n", ".en:3: empty line")],
)
def test_parallel_text_refuses_bad_files(tmp_path, src, tgt, message):
    (tmp_path / "f.de").write_bytes(src)
    (tmp_path / "f.en").write_bytes(tgt)
    with pytest.raises(UserError, match=message):
        load_splits(parse_spec(f"parallel_text:{tmp_path / 'f.de'},{tmp_path / 'f.en'}"), ["train"],
                    data_dir=tmp_path / "d")


def test_bad_tsv_and_specs(tmp_path):
    (tmp_path / "t.tsv").write_text("a\tb\nonly one field\n")
    with pytest.raises(UserError, match="t.tsv:2: expected 2 tab-separated"):
        load_splits(parse_spec(f"parallel_text:{tmp_path / 't.tsv'}"), ["train"], data_dir=tmp_path / "d")
    for spec, message in [("multi30k:de-xx", "two of"), ("wmt:de-en", "expected multi30k"),
                          (f"parallel_text:{tmp_path / 'missing.de'},{tmp_path / 't.tsv'}", "no such file")]:
        with pytest.raises(UserError, match=message):
            load_splits(parse_spec(spec), ["train"], data_dir=tmp_path / "d")


def test_tfds_registry_dataset_with_mock_data(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        d = load_splits(parse_spec("tfds:wmt14_translate/de-en"), ["train", "test"], data_dir=tmp_path)
        assert len(d["train"]) == 4 and all(isinstance(s, str) and isinstance(t, str) for s, t in d["train"])
        flipped = load_splits(parse_spec("tfds:wmt14_translate/de-en:en-de"), ["train"], data_dir=tmp_path)
        assert flipped["train"] == [(t, s) for s, t in d["train"]]
    assert "tensorflow" not in sys.modules


def test_multi30k_downloads_the_official_files_or_says_how_to_work_offline(tmp_path, monkeypatch):
    from s2s_jax.data import multi30k
    from s2s_jax.data.multi30k import Multi30k, url

    monkeypatch.setattr(multi30k, "check_reachable", lambda address: None)  # the host answers; the download fails

    base = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1"
    assert url("train", "de", "raw") == f"{base}/raw/train.de.gz"
    assert url("test_2016_flickr", "en", "tok") == f"{base}/tok/test_2016_flickr.lc.norm.tok.en"

    class Offline:
        @property
        def manual_dir(self):
            raise AssertionError("no manual dir")

        def download(self, urls):
            self.urls = urls
            raise OSError("network is unreachable")

    for config, splits in (("de-en", 6), ("cs-en-tok", 4)):  # Czech has no 2017 test sets
        dl = Offline()
        with pytest.raises(UserError, match="cannot download Multi30k .*--manual-dir"):
            Multi30k(config=config, data_dir=str(tmp_path), file_format="array_record")._split_generators(dl)
        assert len(dl.urls) == 2 * splits and all(u.startswith(base) for u in dl.urls.values())


def test_train_verb_reports_bad_data_in_one_line(tmp_path, capsys):
    from s2s_jax.cli import main

    (tmp_path / "a.de").write_text("ein hund\nzwei katzen\n")
    (tmp_path / "a.en").write_text("a dog\n")
    argv = ["train", "--preset", "bentrevett-attention", "--data", f"parallel_text:{tmp_path / 'a.de'},"
            f"{tmp_path / 'a.en'}", "--data-dir", str(tmp_path / "d"), "--workdir", str(tmp_path / "w")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a.de has 2 lines but" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
