"""Every case of DESIGN.md "Errors" through the command line: one line on stderr naming the problem and the fix,
exit code 2, no traceback, and nothing already saved is damaged.

mismatched parallel files, empty lines, non-UTF-8 bytes, unknown preset or config key, vocab/checkpoint mismatch,
sequences over a model's positional limit, corrupt or partial checkpoints, NaN loss.
"""

import json
import shutil

import pytest

from s2s_jax.cli import main
from s2s_jax.run.workdir import load_run

TINY = ["--digits", "1", "--steps", "4", "--batch-size", "8", "--eval-every", "0", "--log-every", "2",
        "--set", "emb_dim=4", "--set", "hid_dim=4"]


def _files(path):
    return {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _error(capsys, argv, *messages):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"s2s-jax {argv[0]}: error: ")
    for m in messages:
        assert m in err, err
    return err


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("errors") / "run"
    assert main(["train", "--preset", "addition-gru", "--workdir", str(path), *TINY]) == 0
    return path


@pytest.fixture
def copy(workdir, tmp_path):
    path = tmp_path / "copy"
    shutil.copytree(workdir, path)
    return path


@pytest.mark.parametrize("src, tgt, messages", [
    ("a b\nc d\n", "x y\n", ["src.txt has 2 lines but", "tgt.txt has 1", "aligned line by line"]),
    ("a b\n\nc d\n", "x\ny\nz\n", ["src.txt:2: empty line"]),
    (b"a b\n\xff c\n", "x\ny\n", ["src.txt:2: not UTF-8 (byte 0xff at column 1)", "iconv"]),
])
def test_bad_parallel_training_files(tmp_path, capsys, src, tgt, messages):
    for name, text in (("src.txt", src), ("tgt.txt", tgt)):
        (tmp_path / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    w = tmp_path / "w"
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", str(w), "--data-dir", str(tmp_path / "tfds"),
                    "--data", f"parallel_text:{tmp_path / 'src.txt'},{tmp_path / 'tgt.txt'}"], *messages)
    assert not w.exists()


@pytest.mark.parametrize("content, message", [(b"1+2\n\n3+4\n", ":2: empty line; every line must hold a sentence "
                                                                     "(remove the line"),
                                              (b"1+2\n3+\xc3\n", ":2: not UTF-8 (byte 0xc3 at column 3)")])
def test_bad_input_file_to_translate(workdir, tmp_path, capsys, content, message):
    f = tmp_path / "in.txt"
    f.write_bytes(content)
    _error(capsys, ["translate", "--workdir", str(workdir), "--input", str(f)], message)


def test_unknown_preset_and_config_keys(tmp_path, capsys):
    w = str(tmp_path / "w")
    _error(capsys, ["train", "--preset", "nope", "--workdir", w], "unknown preset 'nope'; available: addition-attn")
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", w, "--set", "hid=3"],
           "unknown model config key(s) ['hid']; valid model keys:", "hid_dim")
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", w, "--set", "optimizer.beta2=0.9"],
           "unknown optimizer config key(s) ['beta2']; valid optimizer keys: name, lr, b1, b2")
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", w, "--set", "optimiser.lr=1"],
           "unknown section 'optimiser'")
    assert not (tmp_path / "w").exists()


def test_vocab_that_does_not_match_the_task(copy, capsys):
    vocab = json.loads((copy / "vocab.json").read_text())
    vocab["src"]["tokens"][0], vocab["src"]["tokens"][1] = "1", "0"
    (copy / "vocab.json").write_text(json.dumps(vocab))
    _error(capsys, ["translate", "--workdir", str(copy), "1+2"], "vocab.json does not match the addition task")
    before = _files(copy)
    _error(capsys, ["train", "--workdir", str(copy)], "vocab.json does not match the vocabulary built from the data")
    assert _files(copy) == before


def test_checkpoint_that_does_not_match_the_config(copy, capsys):
    config = json.loads((copy / "config.json").read_text())
    config["model"]["hid_dim"] = 6
    (copy / "config.json").write_text(json.dumps(config))
    _error(capsys, ["translate", "--workdir", str(copy), "1+2"], "does not match config.json",
           "has shape (12,), the model needs (18,)")


def test_sequences_over_the_positional_limit(tmp_path, capsys):
    w = tmp_path / "w"
    _error(capsys, ["train", "--preset", "transformer", "--workdir", str(w), *TINY, "--set", "n_heads=2",
                    "--set", "positions=learned", "--set", "max_len=3"],
           "has sequences of 4 positions but the transformer model has 3 (max_len)", "--set max_len=4")
    assert not w.exists()


def test_corrupt_checkpoint(copy, capsys):
    step_dir = copy / "checkpoints" / "4"
    params = [p for p in step_dir.rglob("*") if p.is_file() and "params" in p.parts]
    victim = max(params, key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-3])
    _error(capsys, ["translate", "--workdir", str(copy), "1+2"], "is corrupt:", "changed since it was saved")
    before = _files(copy)
    _error(capsys, ["train", "--workdir", str(copy)], "is corrupt:")  # not resumed from a damaged state
    assert _files(copy) == before


def test_partial_checkpoint(copy, capsys):
    # what a run killed during its first save leaves: orbax's temporary directory and no manifest
    (copy / "manifest.json").unlink()
    (copy / "checkpoints" / "4").rename(copy / "checkpoints" / "4.orbax-checkpoint-tmp")
    _error(capsys, ["translate", "--workdir", str(copy), "1+2"], "no complete checkpoint")
    _error(capsys, ["export", "--workdir", str(copy), "--out", str(copy / "onnx")], "no complete checkpoint")


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    w = tmp_path / "w"
    # lr 0 for the first update (warmup), then 5e37: the second update overflows the parameters
    argv = ["train", "--preset", "addition-gru", "--workdir", str(w), *TINY, "--lr", "1e38", "--warmup-steps", "2",
            "--schedule", "constant", "--checkpoint-every", "1"]
    _error(capsys, argv, "training stopped: non-finite numbers at step 2", "parameter norm inf",
           "the last good checkpoint, step 1, is kept in", "Lower the learning rate")
    run = load_run(w)
    assert run.step == 1
    assert main(["translate", "--workdir", str(w), "1+2"]) == 0  # the kept checkpoint works
    assert len(capsys.readouterr().out.splitlines()) == 1


def test_more_bad_input_to_translate(workdir, tmp_path, capsys):
    w = str(workdir)
    f = tmp_path / "in.txt"
    f.write_text("1+2\n")
    err = _error(capsys, ["translate", "--workdir", w, "--input", str(f), "3+4"], "not both")  # not silently ignored
    assert "remove the pair" not in err
    vocab = load_run(workdir).config.model.tgt_vocab_size
    _error(capsys, ["translate", "--workdir", w, "--sample", "--top-k", str(vocab + 1), "1+2"],
           f"top_k={vocab + 1} is more than the {vocab} tokens of the target vocabulary")


def test_argparse_errors_are_one_line_too(capsys):
    for argv, message in ((["translate", "--workdir", "w", "--beam", "x"], "argument --beam: invalid int value: 'x'"),
                          (["translate"], "the following arguments are required: --workdir"),
                          (["frobnicate"], "invalid choice: 'frobnicate'")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err and "usage:" not in err, err


def test_version(capsys):
    import s2s_jax

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"s2s-jax {s2s_jax.__version__}"


def test_a_dataset_task_needs_its_data(tmp_path, capsys):
    w = tmp_path / "w"
    _error(capsys, ["train", "--preset", "addition-gru", "--task", "translation", "--workdir", str(w)],
           "--task translation reads a dataset: give it as --data SPEC")
    assert not w.exists()


def test_offline_multi30k_without_manual_dir_fails_at_once(tmp_path, capsys, monkeypatch):
    """No network: one line naming --manual-dir within seconds, instead of TFDS retrying for minutes."""
    import socket
    import time

    import tensorflow_datasets as tfds

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("the downloader was called although the host is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", no_download)
    start = time.monotonic()
    _error(capsys, ["train", "--preset", "addition-gru", "--data", "multi30k:de-en", "--data-dir", str(tmp_path / "d"),
                    "--workdir", str(tmp_path / "w")],
           "raw.githubusercontent.com cannot be reached (Network is unreachable)", "--manual-dir")
    assert time.monotonic() - start < 60


@pytest.mark.parametrize("extra, message", [  # what the CLI fuzz test (test_fuzz_cli.py) found, and its kin
    (["--beam", "4294967296"], "decoding: beam=4294967296 is too large"),
    (["--beam", "15"], "beam=15 is more than the 14 tokens of the target vocabulary"),
    (["--seed", "99999999999999"], "decoding: seed=99999999999999 is too large"),
])
def test_decoding_values_found_by_fuzzing(workdir, capsys, extra, message):
    _error(capsys, ["translate", "--workdir", str(workdir), *extra, "1+2"], message)


def test_training_values_found_by_fuzzing(tmp_path, capsys):
    w = tmp_path / "w"
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", str(w), *TINY, "--warmup-steps", "4294967296"],
           "optimizer: warmup_steps=4294967296 is too large")
    _error(capsys, ["train", "--preset", "addition-gru", "--workdir", str(w), *TINY, "--minutes", "nan"],
           "training: minutes=nan must be a finite number >= 0")
    assert not w.exists()


def test_out_of_memory_and_ctrl_c_outside_training(workdir, capsys, monkeypatch):
    from s2s_jax.run.translate import Translator

    def exhausted(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(Translator, "decode_chunk_beams", exhausted)  # what every decoding path runs
    _error(capsys, ["translate", "--workdir", str(workdir), "1+2"], "out of memory (MemoryError)", "--batch-size")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Translator, "decode_chunk_beams", interrupted)
    assert main(["translate", "--workdir", str(workdir), "1+2"]) == 130
    assert capsys.readouterr().err == "s2s-jax translate: interrupted\n"


def test_an_echoed_line_separator_does_not_break_the_line(workdir, capsys):
    err = _error(capsys, ["translate", "--workdir", str(workdir), "x\u2028y"])
    assert "\\u2028" in err
