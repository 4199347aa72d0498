"""The onnxruntime-only runtime translates text exactly as `s2s-jax translate` does (export/text.py).

End to end: a tiny GRU is trained through the CLI on a generated toy language
(word tokenizer, lowercased), exported with `s2s-jax export`, and
`export.runtime.Translator.translate` must print what `s2s-jax translate
--workdir` prints, greedy and beam 5, on 100 sentences (unknown words,
capitals, lengths 1 to 20) at runtime batch sizes 1, 3 and 32. A SentencePiece
export (separate source and target models, untrained weights: only the text
plumbing and the length bound matter) must match the JAX Translator too.

Piece by piece: export/text.py's tokenizers, vocab lookup and length rule
against s2s_jax/data/tokenizers.py and TranslationTask on many strings, every
kind, with and without lowercasing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optax
import pytest

from export import text as rt_text
from export.onnx_export import MANIFEST_FILE, tokenizer_spec
from export.runtime import TranslationError, Translator
from export.runtime import main as runtime_main
from s2s_jax.cli import main as cli_main
from s2s_jax.data.tokenizers import load_tokenizer, make_tokenizer, save_tokenizer
from s2s_jax.data.translation import TranslationTask
from s2s_jax.models import build_model
from s2s_jax.run.config import DataConfig, DecodeOptions, RunConfig
from s2s_jax.run.train import config_for_task
from s2s_jax.run.translate import Translator as JaxTranslator
from s2s_jax.run.workdir import load_run, save_run
from s2s_jax.training.state import create_train_state

WORDS = {"der": "the", "hund": "dog", "katze": "cat", "rot": "red", "blau": "blue", "grün": "green",
         "haus": "house", "baum": "tree", "läuft": "runs", "schläft": "sleeps", "klein": "small", "groß": "big"}
UNKNOWN = ["zebra", "auto", "3", ",", "?", "straße"]
TINY = ["--set", "emb_dim=16", "--set", "hid_dim=32", "--set", "dropout=0.0"]


def toy_corpus(n: int, seed: int, max_words: int = 6) -> tuple[list[str], list[str]]:
    """Word-for-word 'German' -> 'English' with an optional final . or !, kept by both sides."""
    rng = np.random.default_rng(seed)
    src, tgt = [], []
    for _ in range(n):
        words = [str(w) for w in rng.choice(list(WORDS), rng.integers(1, max_words + 1))]
        end = str(rng.choice([" .", " !", ""]))
        src.append(" ".join(words) + end)
        tgt.append(" ".join(WORDS[w] for w in words) + end)
    return src, tgt


def sentences_100() -> list[str]:
    """100 inputs: in-domain, with capitals and unknown words / punctuation (-> unk), and longer than training."""
    rng = np.random.default_rng(7)
    plain = toy_corpus(50, 5)[0]
    noisy = []
    for s in toy_corpus(30, 6)[0]:
        words = s.split()
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(UNKNOWN)))
        noisy.append(" ".join(w.capitalize() if rng.random() < 0.3 else w for w in words))
    long = toy_corpus(20, 8, max_words=20)[0]
    return plain + noisy + long


def text_workdir(path: Path, src: list[str], tgt: list[str], *, preset: str = "bentrevett-gru",
                 **task_settings) -> Path:
    """A translation workdir with tokenizers fitted on `src`/`tgt` and untrained weights (no data files, no TFDS)."""
    task = TranslationTask("parallel_text:unused.src,unused.tgt", buckets=(8, 16), **task_settings)
    task.fit(src, tgt)
    cfg = config_for_task(preset, task, dict(emb_dim=8, hid_dim=8, dropout=0.0))
    state = create_train_state(build_model(cfg), cfg, optax.adam(1e-3), 0, task.shape_batch())
    save_run(path, RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=preset), task, state)
    return path


# ---- tokenizers, vocab and length rule, piece by piece ---------------------------------------------------------

ALPHABET = list("abcxyzABCXYZäöüÄÖÜßéÉ0123456789.,!?;:'\"-()") + [" ", " ", " ", "  ", "\t", "hund", "Haus", "İ"]


def random_strings(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(ALPHABET, rng.integers(0, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def spm_model():
    """A tiny SentencePiece model (lowercasing) trained on the toy corpus."""
    src, tgt = toy_corpus(300, 0)
    return make_tokenizer("spm", lowercase=True, texts=src + tgt, vocab_size=40)


@pytest.mark.parametrize("kind,options", [
    ("char", {}), ("char", {"lowercase": True}), ("word", {}), ("word", {"lowercase": True}),
    ("word", {"regex": r"[a-zäöüß]+|\d"}), ("space", {}), ("space", {"lowercase": True}), ("spm", {}),
])
def test_tokenizers_match_s2s_jax(kind, options, spm_model, tmp_path):
    tok = spm_model if kind == "spm" else make_tokenizer(kind, **options)
    settings = save_tokenizer(tok, tmp_path, "spm.test")
    original = load_tokenizer(settings, tmp_path)  # what a workdir gives s2s-jax translate
    mirror = rt_text.load_tokenizer(settings, tmp_path)
    strings = random_strings(300, seed=len(kind)) + toy_corpus(100, 3)[0] + [s.upper() for s in toy_corpus(20, 4)[0]]
    for s in strings:
        tokens = original.tokenize(s)
        assert mirror.tokenize(s) == tokens, s
        assert mirror.detokenize(tokens) == original.detokenize(tokens), s
    if kind == "spm":
        assert any(len(original.tokenize(s)) > 1 for s in strings)


@pytest.fixture(scope="module")
def fitted_tasks():
    """Fitted translation tasks of every kind (SentencePiece joint and separate), without data files."""
    src, tgt = toy_corpus(300, 0)
    tasks = {}
    for name, settings in {"word": {"tokenizer": "word", "lowercase": True}, "space": {"tokenizer": "space"},
                           "char": {"tokenizer": "char", "lowercase": True},
                           "spm-joint": {"tokenizer": "spm", "spm_vocab_size": 40},
                           "spm-separate": {"tokenizer": "spm", "spm_vocab_size": 30, "spm_joint": False}}.items():
        task = TranslationTask("parallel_text:unused.src,unused.tgt", len_a=1.2, len_b=3, **settings)
        task.fit(src, tgt)
        tasks[name] = task
    return tasks


@pytest.mark.parametrize("name", ["word", "space", "char", "spm-joint", "spm-separate"])
def test_front_end_matches_translation_task(name, fitted_tasks, tmp_path):
    """tokenizer_spec + model.json's vocab -> TextFrontEnd: the same ids, texts and length bounds as the task."""
    task = fitted_tasks[name]
    spec = tokenizer_spec(task, tmp_path)
    files = {"spm-joint": ["spm.joint.model"], "spm-separate": ["spm.src.model", "spm.tgt.model"]}.get(name, [])
    assert sorted(p.name for p in tmp_path.glob("*.model")) == files
    vocabs = rt_text.Vocab(task.src_vocab.to_dict()), rt_text.Vocab(task.tgt_vocab.to_dict())
    front = rt_text.TextFrontEnd(spec, *vocabs, tmp_path)
    texts = toy_corpus(50, 9)[0] + sentences_100()[50:] + random_strings(100, 11)
    for text in texts:
        expected = task.encode_source(text).tolist()
        if expected:
            assert front.encode(text) == expected, text
        else:
            with pytest.raises(TranslationError, match="no tokens"):
                front.encode(text)
    rng = np.random.default_rng(0)
    for _ in range(200):  # any ids, specials included: cut at eos, pad/bos dropped, unk kept
        ids = rng.integers(0, len(task.tgt_vocab), rng.integers(0, 12)).tolist()
        assert front.decode(ids) == task.decode_output(ids), ids
    lengths = np.arange(0, 300)
    np.testing.assert_array_equal(front.row_limits(lengths), task.decode_limit(lengths))


# ---- end to end: CLI-trained word model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    """(workdir, export dir): a GRU trained by `s2s-jax train` on 400 toy pairs, exported by `s2s-jax export`."""
    root = tmp_path_factory.mktemp("export_text")
    src, tgt = toy_corpus(400, 0)
    (root / "train.de").write_text("\n".join(src) + "\n", encoding="utf-8")
    (root / "train.en").write_text("\n".join(tgt) + "\n", encoding="utf-8")
    data = f"parallel_text:{root / 'train.de'},{root / 'train.en'}"
    assert cli_main(["train", "--preset", "bentrevett-gru", "--data", data, "--data-dir", str(root / "tfds"),
                     "--tokenizer", "word", "--lowercase", "--min-freq", "1", "--buckets", "8,16",
                     "--workdir", str(root / "run"), *TINY, "--steps", "300", "--batch-size", "32", "--lr", "0.03",
                     "--eval-every", "0", "--schedule", "constant"]) == 0
    assert cli_main(["export", "--workdir", str(root / "run"), "--out", str(root / "onnx")]) == 0
    return root / "run", root / "onnx"


@pytest.fixture(scope="module")
def cli_outputs(word_run):
    """`s2s-jax translate --workdir` lines for the test sentences, greedy and --beam 5."""
    import contextlib
    import io

    outputs = {}
    for beam in (1, 5):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli_main(["translate", "--workdir", str(word_run[0]), *sentences_100(),
                             *(["--beam", "5"] if beam > 1 else [])]) == 0
        outputs[beam] = out.getvalue().splitlines()
    return outputs


def test_trained_model_translates_non_trivially(word_run, cli_outputs):
    sentences, greedy = sentences_100(), cli_outputs[1]
    assert len(greedy) == len(sentences) == 100
    assert len(set(greedy)) > 60
    reference = dict(zip(*toy_corpus(50, 5), strict=True))
    right = sum(reference[s] == g for s, g in zip(sentences[:50], greedy, strict=False))
    assert right >= 10, f"only {right} of 50 in-domain sentences translated exactly; train longer"


@pytest.mark.parametrize("beam", [1, 5])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_runtime_equals_cli_translate(word_run, cli_outputs, beam, batch_size):
    translator = Translator.load(word_run[1])
    assert translator.translate(sentences_100(), beam=beam, batch_size=batch_size) == cli_outputs[beam]


def test_runtime_cli_and_manifest(word_run, cli_outputs, capsys):
    out = word_run[1]
    manifest = Translator.load(out).manifest
    assert manifest["tokenizer"]["type"] == "text"
    assert manifest["tokenizer"]["src"] == {"kind": "word", "lowercase": True, "regex": r"\w+|[^\w\s]"}
    assert not list(out.glob("*.model")) and (out / MANIFEST_FILE).is_file()
    sentences = sentences_100()[45:55]
    assert runtime_main([str(out), *sentences, "--beam", "5"]) == 0
    assert capsys.readouterr().out.splitlines() == cli_outputs[5][45:55]
    best3 = Translator.load(out).translate(sentences, beam=5, n_best=3)
    assert [hyps[0] for hyps in best3] == cli_outputs[5][45:55] and all(len(h) == 3 for h in best3)
    assert runtime_main([str(out), "  "]) == 2
    assert "no tokens to translate" in capsys.readouterr().err


def test_max_len_bounds_every_row(word_run):
    translator = Translator.load(word_run[1])
    sentences = sentences_100()[80:]
    for beam in (1, 5):
        short = translator.translate(sentences, beam=beam, max_len=3)
        assert all(len(line.split()) <= 2 for line in short)  # 3 tokens, the last one eos (forced)


# ---- end to end: SentencePiece ----------------------------------------------------------------------------------

def test_spm_export_equals_jax(tmp_path):
    """Separate source/target SentencePiece models, lowercasing: runtime == JAX Translator, greedy and beam 5."""
    src, tgt = toy_corpus(300, 0)
    workdir = text_workdir(tmp_path / "run", src, tgt, tokenizer="spm", spm_vocab_size=30, spm_joint=False,
                           lowercase=True)
    assert cli_main(["export", "--workdir", str(workdir), "--out", str(tmp_path / "onnx")]) == 0
    assert sorted(p.name for p in (tmp_path / "onnx").glob("*.model")) == ["spm.src.model", "spm.tgt.model"]
    run = load_run(workdir)
    translator = Translator.load(tmp_path / "onnx")
    sentences = sentences_100()[::4]
    for beam in (1, 5):
        opts = DecodeOptions(beam=beam) if beam > 1 else DecodeOptions()
        jax_translator = JaxTranslator(run.config.model, run.params, run.task, batch_size=len(sentences))
        expected = jax_translator.translate(sentences, opts)
        assert translator.translate(sentences, beam=beam, batch_size=3) == expected
