"""The `s2s-jax` verbs: train a tiny run, translate with it, and one-line errors with exit code 2."""

import io
import subprocess
import sys

import numpy as np
import pytest

from s2s_jax.cli import main
from s2s_jax.config import ConfigError
from s2s_jax.decoding.greedy import make_greedy_decoder
from s2s_jax.models import build_model
from s2s_jax.run.overrides import parse_model_sets
from s2s_jax.run.workdir import load_run

TINY = ["--set", "emb_dim=8", "--set", "hid_dim=8", "--steps", "20", "--batch-size", "16", "--eval-every", "10"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--preset", "addition-gru", "--task", "addition", "--digits", "2", "--workdir", str(path),
                 "--set", "reverse_source=true", *TINY]) == 0
    return path


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert message in err
    return err


def test_train_writes_a_complete_workdir(workdir, capsys):
    run = load_run(workdir)
    assert run.config.model.hid_dim == 8 and run.config.model.reverse_source and run.step == 20
    assert run.config.training.steps == 20 and run.task.settings()["digits"] == 2


def test_translate_prints_the_greedy_answers(workdir, capsys, monkeypatch):
    inputs = ["12+35", "99+1", "3+4"]
    assert main(["translate", "--workdir", str(workdir), *inputs]) == 0
    lines = capsys.readouterr().out.splitlines()
    run = load_run(workdir)
    src, lengths = run.task.encode_inputs(inputs)
    tokens, _ = make_greedy_decoder(build_model(run.config.model), run.task.max_decode_len)(run.params, src, lengths)
    assert lines == [run.task.decode_output(row) for row in np.asarray(tokens)]
    # The same from stdin, one problem per line; blank lines are skipped.
    monkeypatch.setattr(sys, "stdin", io.StringIO("12+35\n\n99+1\n3+4\n"))
    assert main(["translate", "--workdir", str(workdir)]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def _greedy_lines(run, inputs):
    src, lengths = run.task.encode_inputs(inputs)
    tokens, _ = make_greedy_decoder(build_model(run.config.model), run.task.max_decode_len)(run.params, src, lengths)
    return [run.task.decode_output(row) for row in np.asarray(tokens)]


def test_translate_checkpoint_choice(workdir, capsys):
    # the run evaluated at steps 10 and 20: each is loadable by number; the default is the best one
    inputs = [f"{a}+{b}" for a in range(0, 100, 7) for b in (3, 58, 91)]
    for which in ("10", "20", "latest", None):
        assert main(["translate", "--workdir", str(workdir), *inputs]
                    + (["--checkpoint", which] if which else [])) == 0
        expected = load_run(workdir, int(which) if which and which.isdigit() else (which or "best"))
        assert capsys.readouterr().out.splitlines() == _greedy_lines(expected, inputs)
    assert load_run(workdir, "best").step in (10, 20) and load_run(workdir, 10).step == 10
    _one_line_error(capsys, ["translate", "--workdir", str(workdir), "--checkpoint", "7", "1+2"],
                    "no checkpoint of step 7; kept steps: 10, 20")
    with pytest.raises(SystemExit) as e:
        main(["translate", "--workdir", str(workdir), "--checkpoint", "newest", "1+2"])
    assert e.value.code == 2 and "not best, latest, a step number, ema[:STEP] or averaged" in capsys.readouterr().err


def test_presets_lists_names(capsys):
    assert main(["presets"]) == 0
    assert "addition-gru" in capsys.readouterr().out


def test_parse_overrides_types():
    assert parse_model_sets(["hid_dim=64", "cell=lstm", "dropout=0.25", "reverse_source=false"]) == {
        "hid_dim": 64, "cell": "lstm", "dropout": 0.25, "reverse_source": False}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_model_sets(["hid_dim"])


@pytest.mark.parametrize(
    "extra, message",
    [(["--preset", "nope"], "unknown preset 'nope'"),
     (["--preset", "addition-gru", "--set", "colour=red"], "unknown model config key(s) ['colour']"),
     (["--preset", "addition-gru", "--set", "hid_dim=big"], "hid_dim=big: expected int"),
     (["--preset", "addition-gru", "--set", "eos_id=3"], "come from the task"),
     (["--preset", "addition-gru", "--task", "sorting"], "unknown task 'sorting'"),
     (["--preset", "addition-gru", "--digits", "0"], "digits=0")],
)
def test_train_errors(capsys, tmp_path, extra, message):
    _one_line_error(capsys, ["train", "--workdir", str(tmp_path / "w"), *extra], message)
    assert not (tmp_path / "w").exists()


def test_train_refuses_to_resume_a_run_with_another_config(workdir, capsys):
    # an existing run is resumed when the config matches (tests/training/test_resume.py); otherwise it is an error
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()}
    _one_line_error(capsys, ["train", "--preset", "addition-gru", "--workdir", str(workdir)],
                    "holds a run with a different config")
    assert {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "inputs, message",
    [(["12*3"], "not an addition problem"), (["1+2", "123+4"], "more than 2 digits"), (["12+ab"], "digits 0-9")],
)
def test_translate_bad_inputs(workdir, capsys, inputs, message):
    _one_line_error(capsys, ["translate", "--workdir", str(workdir), *inputs], message)
    assert capsys.readouterr().out == ""


def test_translate_errors(workdir, capsys, tmp_path, monkeypatch):
    _one_line_error(capsys, ["translate", "--workdir", str(tmp_path / "missing"), "1+2"], "does not exist")
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    _one_line_error(capsys, ["translate", "--workdir", str(workdir)], "nothing to translate")


def test_console_error_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "s2s_jax.cli", "translate", "--workdir", str(tmp_path / "none"), "1+2"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"s2s-jax translate: error: workdir {tmp_path / 'none'} does not exist"]
