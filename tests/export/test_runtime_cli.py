"""`python -m export.runtime` takes its inputs as `s2s-jax translate` does, and each bad input is one stderr line.

An untrained addition-gru export (only the plumbing matters). Inputs as arguments, `--input FILE` and stdin
give the lines `Translator.translate` gives, at any `--batch-size` and `--threads`; `--n-best` prints the
beam's hypotheses tab-separated, best first. Every bad input — flags, files, text, a damaged export — ends
with exit code 2 and exactly one line on stderr naming the problem, never a traceback.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

from export.runtime import Translator
from export.runtime_cli import main
from tests.export.test_runtime_isolation import TEXTS, export_dir  # noqa: F401  (the module's export fixture)


def run_cli(argv: list[str], capsys, monkeypatch, stdin: str | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse's own exit for usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_inputs_arguments_file_and_stdin_agree(export_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    out = export_dir[1]
    expected = Translator.load(out).translate(TEXTS)
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    runs = [
        [out, *TEXTS],
        [out, "--input", tmp_path / "in.txt", "--batch-size", "2"],
        [out, "--input", tmp_path / "in.txt", "--threads", "1", "--graph-optimization", "basic"],
    ]
    for argv in runs:
        code, stdout, err = run_cli(argv, capsys, monkeypatch)
        assert (code, err) == (0, ""), argv
        assert stdout.splitlines() == expected, argv
    # stdin: blank lines skipped, as `translate` skips them; batches of 2 as lines arrive
    code, stdout, err = run_cli([out, "--batch-size", "2"], capsys, monkeypatch, stdin="\n".join(TEXTS[:2]) + "\n\n"
                                + "\n".join(TEXTS[2:]) + "\n")
    assert (code, err) == (0, "")
    assert stdout.splitlines() == expected


def test_n_best_prints_the_beam_best_first(export_dir, capsys, monkeypatch):  # noqa: F811
    out = export_dir[1]
    expected = Translator.load(out).translate(TEXTS, beam=3, n_best=2)
    code, stdout, err = run_cli([out, *TEXTS, "--beam", "3", "--n-best", "2"], capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert [line.split("\t") for line in stdout.splitlines()] == expected
    assert [h[0] for h in expected] == Translator.load(out).translate(TEXTS, beam=3)


def _damaged(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    if how == "no model.json":
        (dst / "model.json").unlink()
    elif how == "model.json lacks keys":
        manifest = json.loads((dst / "model.json").read_text())
        del manifest["state_reorder"], manifest["special_ids"]["eos"]
        (dst / "model.json").write_text(json.dumps(manifest))
    elif how == "truncated step":
        data = (dst / "decoder_step.onnx").read_bytes()
        (dst / "decoder_step.onnx").write_bytes(data[: len(data) // 2])
    elif how == "garbage encoder":
        (dst / "encoder.onnx").write_bytes(b"this is not an onnx model")
    elif how == "no reorder graph":
        (dst / "state_reorder.onnx").unlink()
    return dst


BAD = [
    # (case, argv after OUT, stdin, what the line must say)
    ("arguments and --input", ["12+3", "--input", "{tmp}/in.txt"], None, "not both"),
    ("missing --input file", ["--input", "{tmp}/nope.txt"], None, "no such file"),
    ("empty line", ["--input", "{tmp}/empty_line.txt"], None, "empty_line.txt:2: empty line"),
    ("not UTF-8", ["--input", "{tmp}/latin1.txt"], None, "latin1.txt:1: not UTF-8"),
    ("not an addition problem", ["12-3"], None, "not an addition problem"),
    ("operand too long", ["123+4"], None, "more than 2 digits"),
    ("beam 0", ["12+3", "--beam", "0"], None, "must be >= 1"),
    ("threads not a number", ["12+3", "--threads", "two"], None, "is not a whole number"),
    ("n-best over beam", ["12+3", "--beam", "2", "--n-best", "3"], None, "must be <= --beam 2"),
    ("unknown optimization", ["12+3", "--graph-optimization", "max"], None, "invalid choice"),
    ("max-len over the state", ["12+3", "--max-len", "0"], None, "must be >= 1"),
    ("int8 not exported", ["12+3", "--int8"], None, "no int8 graphs"),
    ("empty stdin", [], "\n\n", "nothing to translate"),
]
DAMAGE = [("no model.json", "is missing"), ("model.json lacks keys", "lacks state_reorder, special_ids.eos"),
          ("truncated step", "decoder_step.onnx is not a valid ONNX graph"),
          ("garbage encoder", "encoder.onnx is not a valid ONNX graph"),
          ("no reorder graph", "state_reorder.onnx is missing")]


def _one_error_line(code: int, stdout: str, err: str, expected: str) -> None:
    assert code == 2, err
    assert stdout == ""
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m export.runtime: error: ") and expected in err, err


@pytest.mark.parametrize("case,args,stdin,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(export_dir, tmp_path, capsys, monkeypatch, case, args, stdin,  # noqa: F811
                                          expected):
    (tmp_path / "in.txt").write_text("12+3\n", encoding="utf-8")
    (tmp_path / "empty_line.txt").write_text("12+3\n   \n4+5\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("12+3 \u00e9\n".encode("latin-1"))
    argv = [export_dir[1], *(a.format(tmp=tmp_path) for a in args)]
    _one_error_line(*run_cli(argv, capsys, monkeypatch, stdin=stdin), expected)


@pytest.mark.parametrize("how,expected", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_damaged_export_is_one_line_and_exit_2(export_dir, tmp_path, capsys, monkeypatch, how,  # noqa: F811
                                               expected):
    out = _damaged(export_dir[1], tmp_path / "damaged", how)
    _one_error_line(*run_cli([out, "12+3"], capsys, monkeypatch), expected)


# ---- hypothesis: random flag values and inputs (the s2s-jax verbs' version is tests/cli/test_fuzz_cli.py) -------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.cli.test_fuzz_cli import INT, NUMBER, SCALE, TEXT  # noqa: E402

RUNTIME_FLAGS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["--beam", "--n-best", "--max-len", "--batch-size", "--threads", "--no-repeat-ngram",
                               "--top-k", "--seed"]), INT),
    st.tuples(st.sampled_from(["--alpha", "--temperature", "--top-p"]), NUMBER),
    st.tuples(st.sampled_from(["--sample", "--print-scores"])),
    st.tuples(st.sampled_from(["--prefix-file", "--ensemble"]), st.sampled_from(["/nonexistent", "/"])),
    st.tuples(st.just("--graph-optimization"), st.sampled_from(["all", "basic", "none", "extended", "max"])),
    st.tuples(st.just("--input"), st.sampled_from(["/nonexistent", "/"])),
    st.tuples(st.just("--int8")),
), max_size=4)


@settings(max_examples=max(1, int(25 * SCALE)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(flags=RUNTIME_FLAGS, inputs=st.lists(st.one_of(TEXT, st.sampled_from(["1+2", "99+99", "1+"])), min_size=1,
                                            max_size=3))
def test_random_flags_and_inputs_are_success_or_one_line(export_dir, capsys, monkeypatch, flags,  # noqa: F811
                                                         inputs):
    argv = [str(export_dir[1]), *[part for f in flags for part in f], "--", *inputs]
    code, _, err = run_cli(argv, capsys, monkeypatch)
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)


def test_inputs_may_follow_the_flags_and_errors_stay_one_line(export_dir, capsys, monkeypatch):  # noqa: F811
    """What the fuzzing above found: `OUT --beam 2 TEXT` (README's own order) was refused, and an echoed input
    holding a line separator (U+0085) broke the one-line error in two."""
    out = export_dir[1]
    code, stdout, err = run_cli([out, "--beam", "2", "1+2"], capsys, monkeypatch)
    assert (code, err) == (0, "") and stdout.splitlines() == Translator.load(out).translate(["1+2"], beam=2)
    code, _, err = run_cli([out, "--bogus", "\x85"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "\\x85" in err
