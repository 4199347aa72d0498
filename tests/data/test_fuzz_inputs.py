"""Hypothesis fuzzing of everything user text goes through: tokenizers, vocab, task encoding, and decoding with
tiny untrained models. Random unicode, empty strings and very long lines give outputs or a UserError, never a
crash (any other exception fails the test)."""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2s_jax import presets
from s2s_jax.data.addition import AdditionTask
from s2s_jax.data.tokenizers import make_tokenizer
from s2s_jax.data.translation import TranslationTask
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError
from s2s_jax.models import build_model
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Translator

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TEXT = st.text(st.characters(codec="utf-8"), max_size=40)  # every code point UTF-8 can carry, surrogates excluded
TEXTS = st.lists(TEXT, min_size=1, max_size=4)
LONG = st.text(st.characters(codec="utf-8"), min_size=500, max_size=3000)
CORPUS = (["ein Hund läuft .", "zwei Katzen schlafen !", "ein Mann, eine Frau: 3 Kinder?", "Ça va — très bien."],
          ["a dog runs .", "two cats sleep !", "a man, a woman: 3 kids?", "all good — very good."])


@pytest.mark.parametrize("kind", ["word", "space", "char"])
@FUZZ
@given(text=st.one_of(TEXT, LONG), lowercase=st.booleans())
def test_tokenizers(kind, text, lowercase):
    tok = make_tokenizer(kind, lowercase=lowercase)
    tokens = tok.tokenize(text)
    assert all(isinstance(t, str) and t for t in tokens)
    assert isinstance(tok.detokenize(tokens), str)


@FUZZ
@given(seqs=st.lists(st.lists(TEXT.filter(bool), max_size=6), max_size=6), probe=st.lists(TEXT, max_size=8))
def test_vocab(seqs, probe):
    vocab = Vocab.build(seqs)
    ids = vocab.encode(probe, bos=True, eos=True)
    assert all(0 <= i < len(vocab) for i in ids)
    known = [t for t in probe if t in vocab and t not in vocab.specials.values()]
    assert vocab.decode(vocab.encode(known)) == known
    assert Vocab.from_dict(vocab.to_dict()) == vocab


@pytest.fixture(scope="module")
def text_task():
    task = TranslationTask("parallel_text:none.src,none.tgt", buckets=(8, 16, 32), max_len=31)
    task.fit(*CORPUS)
    return task


def _translator(task, preset, **overrides):
    sv, tv = task.src_vocab, task.tgt_vocab
    cfg = presets.get(preset, src_vocab_size=len(sv), tgt_vocab_size=len(tv), pad_id=tv.pad_id, bos_id=tv.bos_id,
                      eos_id=tv.eos_id, emb_dim=8, hid_dim=8, **overrides)
    model = build_model(cfg)
    src = np.ones((2, 4), np.int32)
    params = model.init(jax.random.key(0), src, np.array([4, 2], np.int32), src)["params"]
    return Translator(cfg, params, task, batch_size=4)


@pytest.fixture(scope="module")
def rnn_translator(text_task):
    return _translator(text_task, "bentrevett-gru")


def _outputs_or_user_error(translator, texts, opts=None):
    try:
        out = translator.translate(texts, opts or DecodeOptions())
    except UserError as e:
        assert str(e)
        return None
    assert len(out) == len(texts) and all(isinstance(o, str) for o in out)
    return out


@FUZZ
@given(texts=st.lists(st.one_of(TEXT, LONG), min_size=1, max_size=4))
def test_text_task_encoding(text_task, texts):
    try:
        src, lengths = text_task.encode_inputs(texts)
    except UserError as e:
        assert "has no tokens to translate" in str(e)
        assert any(not text_task.src_tok.tokenize(t) for t in texts)
        return
    assert src.shape[0] == len(texts) and (lengths >= 1).all() and src.shape[1] >= lengths.max()
    assert ((0 <= src) & (src < len(text_task.src_vocab))).all()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=TEXTS, method=st.sampled_from(["greedy", "beam", "sample"]))
def test_decoding_random_text(rnn_translator, texts, method):
    opts = DecodeOptions(beam=2 if method == "beam" else 1, sample=method == "sample")
    _outputs_or_user_error(rnn_translator, texts, opts)


def test_decoding_empty_and_very_long_lines(text_task, rnn_translator):
    assert _outputs_or_user_error(rnn_translator, [""]) is None
    assert _outputs_or_user_error(rnn_translator, ["   \t "]) is None
    long = " ".join(["Hund"] * 300)  # far past the largest bucket
    out = _outputs_or_user_error(rnn_translator, [long, "ein Hund"])
    assert out is not None  # an RNN has no positional limit: decoded, cut at its length limit
    # a model with a learned position table refuses what it cannot represent, with a message
    transformer = _translator(text_task, "transformer", n_heads=2, ff_dim=8, n_layers=1, positions="learned",
                              max_len=24, tie_embeddings=False)
    with pytest.raises(UserError, match="max_len"):
        transformer.translate([long])


@FUZZ
@given(texts=TEXTS)
def test_addition_inputs(texts):
    task = AdditionTask(digits=2, n_heldout=10)
    try:
        src, lengths = task.encode_inputs(texts)
    except UserError as e:
        assert "addition problem" in str(e) or "digits" in str(e)
        return
    assert src.shape == (len(texts), 6) and (lengths == 6).all()
