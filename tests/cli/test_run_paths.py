"""The real paths between the verbs and the workdir: `train` -> `export` keeps the preset; the run's `decoding`
section is what `translate` / `evaluate` decode with unless a flag says otherwise; validation BLEU during
training is the figure `evaluate` reproduces."""

import json

import numpy as np
import pytest

from s2s_jax.cli import main
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Translator
from s2s_jax.run.workdir import load_run

TINY = ["--set", "emb_dim=8", "--set", "hid_dim=8", "--batch-size", "8", "--no-progress"]


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    """An addition run trained with `--set decoding.beam=4`, through the CLI as a user trains it."""
    path = tmp_path_factory.mktemp("paths") / "run"
    assert main(["train", "--preset", "addition-gru", "--workdir", str(path), "--steps", "6", "--eval-every", "3",
                 "--set", "decoding.beam=4", "--set", "decoding.alpha=0.5", *TINY]) == 0
    return path


def test_train_then_export_keeps_the_preset(beam_run, tmp_path):
    out = tmp_path / "onnx"
    assert main(["export", "--workdir", str(beam_run), "--out", str(out)]) == 0
    manifest = json.loads((out / "model.json").read_text())
    config = json.loads((beam_run / "config.json").read_text())
    assert manifest["preset"] == config["preset"] == "addition-gru"
    assert manifest["config"] == config["model"]


def _spy(monkeypatch):
    """Record the options each Translator.details call (what `translate` prints from) decodes with, and decode as
    it would."""
    seen = []
    real = Translator.details

    def details(self, texts, opts, *args, **kwargs):
        seen.append(opts)
        return real(self, texts, opts, *args, **kwargs)

    monkeypatch.setattr(Translator, "details", details)
    return seen


def test_saved_decoding_section_is_the_default(beam_run, monkeypatch, capsys):
    run = load_run(beam_run, "best")
    assert run.config.decoding == DecodeOptions(beam=4, alpha=0.5)
    beam4 = DecodeOptions(beam=4, alpha=0.5)
    expected = Translator(run.config.model, run.params, run.task).translate(["12+35", "7+8"], beam4)
    seen = _spy(monkeypatch)
    assert main(["translate", "--workdir", str(beam_run), "12+35", "7+8"]) == 0
    assert capsys.readouterr().out.splitlines() == expected
    assert seen == [beam4]
    # flags override single fields; --beam 1 is greedy, --sample takes one hypothesis
    assert main(["translate", "--workdir", str(beam_run), "--beam", "1", "1+1"]) == 0
    assert main(["translate", "--workdir", str(beam_run), "--alpha", "0", "1+1"]) == 0
    assert main(["translate", "--workdir", str(beam_run), "--sample", "--seed", "3", "1+1"]) == 0
    assert seen[1:] == [DecodeOptions(beam=1, alpha=0.5), DecodeOptions(beam=4, alpha=0.0),
                        DecodeOptions(beam=1, alpha=0.5, sample=True, seed=3)]
    assert [o.method for o in seen] == ["beam", "greedy", "beam", "sample"]


def test_bad_decoding_values_are_one_line_errors(beam_run, tmp_path, capsys):
    for argv, message in ((["translate", "--workdir", str(beam_run), "--beam", "0", "1+1"], "beam=0 must be >= 1"),
                          (["translate", "--workdir", str(beam_run), "--sample", "--beam", "3", "1+1"],
                           "choose beam=3 or sample"),
                          (["translate", "--workdir", str(beam_run), "--alpha", "nan", "1+1"], "alpha=nan"),
                          (["train", "--preset", "addition-gru", "--workdir", str(tmp_path / "w"),
                            "--set", "decoding.bogus=1"], "unknown decoding config key")):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


WORDS = {"rot": "red", "blau": "blue", "hund": "dog", "katze": "cat", "haus": "house"}


def test_validation_bleu_is_what_evaluate_gives(tmp_path, capsys):
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 120), ("validation", 12)):
        src = [" ".join(rng.choice(list(WORDS), rng.integers(1, 5))) for _ in range(n)]
        (tmp_path / f"{split}.de").write_text("\n".join(src) + "\n")
        (tmp_path / f"{split}.en").write_text("\n".join(" ".join(WORDS[w] for w in s.split()) for s in src) + "\n")
        files[split] = f"{tmp_path / f'{split}.de'},{tmp_path / f'{split}.en'}"
    data = "parallel_text:" + ";".join(f"{k}={v}" for k, v in files.items())
    path = tmp_path / "run"
    assert main(["train", "--preset", "bentrevett-gru", "--data", data, "--data-dir", str(tmp_path / "tfds"),
                 "--min-freq", "1", "--buckets", "8,16", "--workdir", str(path), "--steps", "30", "--eval-every", "30",
                 "--lr", "0.03", "--best-metric", "bleu", "--set", "decoding.beam=2", *TINY]) == 0
    validation_bleu = json.loads((path / "metrics.jsonl").read_text().splitlines()[-1])["bleu"]
    capsys.readouterr()
    assert main(["evaluate", "--workdir", str(path), "--split", "validation"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["decoding"]["beam"] == 2 and result["step"] == 30
    assert result["bleu"] == validation_bleu
