"""Hypothesis drives the command line with random flag values and inputs: `translate`, `evaluate` and `train`
(and the ONNX runtime's CLI in tests/export). Every outcome is success (exit 0) or exactly one line on stderr
with exit 2; any exception escaping `main` (a traceback for the user) fails the test.

Values come from small pools of edge cases (zero, negative, NaN, huge, wrong type, random text) so that the
examples share compiled functions; `S2S_JAX_FUZZ_EXAMPLES` raises the example counts for a longer hunt.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_jax.cli import main

SCALE = float(os.environ.get("S2S_JAX_FUZZ_EXAMPLES", "1"))


def fuzz(examples):
    return settings(max_examples=max(1, int(examples * SCALE)), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
NUMBER = st.sampled_from(["0", "1", "2", "-1", "3", "nan", "inf", "-inf", "1e9", "0.5", "x", "", "99999999999999"])
INT = st.sampled_from(["0", "1", "2", "3", "-1", "64", "x", "", "1.5", "4294967296"])


def flag(name, values):
    return st.tuples(st.just(name), values)


DECODE_FLAGS = [flag("--beam", INT), flag("--alpha", NUMBER), flag("--temperature", NUMBER), flag("--top-k", INT),
                flag("--seed", INT), flag("--batch-size", INT), flag("--top-p", NUMBER), flag("--no-repeat-ngram", INT),
                flag("--ensemble", st.sampled_from(["/nonexistent", "/"])),
                flag("--checkpoint", st.sampled_from(["best", "latest", "0", "30", "999", "x"])),
                st.tuples(st.just("--sample"))]


def argv_of(flags):
    return [part for f in flags for part in f]


def _outcome(capsys, argv):
    """main's exit code, with the one-line-or-nothing rule on stderr checked."""
    try:
        code = main(argv)
    except SystemExit as e:  # argparse
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    lines = err.strip().splitlines()
    if code == 2:
        assert len(lines) == 1 and "Traceback" not in err, (argv, err)
    else:
        assert "Traceback" not in err, (argv, err)
    return code


@pytest.fixture(scope="module")
def addition_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "add"
    assert main(["train", "--preset", "addition-gru", "--digits", "1", "--steps", "30", "--batch-size", "16",
                 "--eval-every", "0", "--set", "emb_dim=8", "--set", "hid_dim=8", "--workdir", str(path),
                 "--no-progress"]) == 0
    return path


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_text")
    pairs = {"train": 60, "validation": 6, "test": 7}
    files = []
    for split, n in pairs.items():
        src = [" ".join(["rot", "blau", "hund"][: 1 + i % 3]) for i in range(n)]
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(s.replace("rot", "red") for s in src) + "\n")
        files.append(f"{split}={root / f'{split}.de'},{root / f'{split}.en'}")
    path = root / "run"
    assert main(["train", "--preset", "bentrevett-gru", "--data", "parallel_text:" + ";".join(files), "--data-dir",
                 str(root / "tfds"), "--min-freq", "1", "--buckets", "8", "--set", "emb_dim=8", "--set", "hid_dim=8",
                 "--steps", "2", "--batch-size", "8", "--eval-every", "0", "--workdir", str(path),
                 "--no-progress"]) == 0
    return path


@fuzz(30)
@given(flags=st.lists(st.one_of(*DECODE_FLAGS, flag("--input", st.sampled_from(["/nonexistent", "/", "FILE"])),
                                flag("--prefix-file", st.sampled_from(["/nonexistent", "/"])),
                                st.tuples(st.sampled_from(["--print-scores", "--print-alignment", "--replace-unk"]))),
                      max_size=4),
       inputs=st.lists(st.one_of(TEXT, st.sampled_from(["1+2", "9+9", "12+3", "1+", "+"])), max_size=3))
def test_translate(addition_run, tmp_path_factory, capsys, flags, inputs):
    if any(f[0] == "--input" and f[1] == "FILE" for f in flags):
        path = tmp_path_factory.mktemp("input") / "in.txt"
        path.write_text("\n".join(inputs) + "\n", encoding="utf-8")
        flags = [(f[0], str(path)) if f[:2] == ("--input", "FILE") else f for f in flags]
        inputs = []
    argv = ["translate", "--workdir", str(addition_run), *argv_of(flags), "--", *inputs]
    if not inputs and not any(f[0] == "--input" for f in flags):
        argv = argv[:-1] + ["1+2"]  # stdin would be pytest's
    _outcome(capsys, argv)


@fuzz(12)
@given(flags=st.lists(st.one_of(*DECODE_FLAGS, flag("--split", st.sampled_from(["test", "validation", "nope", ""])),
                                flag("--limit", INT)), max_size=4))
def test_evaluate(text_run, tmp_path_factory, capsys, flags):
    out = tmp_path_factory.mktemp("eval")
    _outcome(capsys, ["evaluate", "--workdir", str(text_run), "--out", str(out), *argv_of(flags)])


TRAIN_SETS = st.sampled_from(["hid_dim=0", "hid_dim=-3", "dropout=1.5", "dropout=nan", "n_layers=0", "emb_dim=x",
                              "bogus=1", "training.keep=0", "decoding.beam=0", "optimizer.b2=2", "optimizer.lr=nan",
                              "data.digits=0", "model.max_len=1", "=", "hid_dim", "optimizer.clip_norm=-1"])
TRAIN_FLAGS = [flag("--steps", st.sampled_from(["0", "1", "2", "-1", "x"])),
               flag("--batch-size", st.sampled_from(["0", "1", "3", "8", "-1"])), flag("--lr", NUMBER),
               flag("--schedule", st.sampled_from(["constant", "cosine", "inverse_sqrt", "bogus"])),
               flag("--warmup-steps", INT), flag("--label-smoothing", NUMBER), flag("--eval-every", INT),
               flag("--log-every", INT), flag("--grad-accum", INT), flag("--keep", INT),
               flag("--checkpoint-every", INT), flag("--patience", INT), flag("--minutes", NUMBER),
               flag("--digits", st.sampled_from(["0", "1", "-1", "30"])), flag("--set", TRAIN_SETS),
               flag("--precision", st.sampled_from(["fp32", "bf16", "fp8"])),
               flag("--optimizer", st.sampled_from(["adam", "sgd", "lion"])),
               flag("--preset", st.sampled_from(["addition-gru", "addition-attn", "nope"])),
               flag("--task", st.sampled_from(["addition", "translation", "nope"]))]


@fuzz(12)
@given(flags=st.lists(st.one_of(*TRAIN_FLAGS), max_size=4))
def test_train(tmp_path_factory, capsys, flags):
    workdir = tmp_path_factory.mktemp("train") / "w"
    given_names = {f[0] for f in flags}
    base = [] if "--preset" in given_names else ["--preset", "addition-gru"]
    base += [] if "--steps" in given_names else ["--steps", "2"]
    base += [] if "--batch-size" in given_names else ["--batch-size", "8"]
    base += [] if "--digits" in given_names else ["--digits", "1"]
    # tiny models whatever the flags say (a --set of the same key comes later and wins)
    argv = ["train", "--workdir", str(workdir), *base, "--eval-every", "0", "--no-progress",
            "--set", "emb_dim=4", "--set", "hid_dim=4", *argv_of(flags)]
    _outcome(capsys, argv)

