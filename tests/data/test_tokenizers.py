"""Tokenizers: char/word/space/SentencePiece round trips, saving with the run, vocab min_freq and unk."""

import pytest

from s2s_jax.data.tokenizers import load_tokenizer, make_tokenizer, save_tokenizer
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError

TEXTS = ["Ein Mann fährt Rad.", "Zwei Hunde spielen im Schnee.", "Ein Kind isst ein Eis, lächelnd!"] * 20


def test_char_round_trip_keeps_spaces():
    tok = make_tokenizer("char")
    assert tok.tokenize("ab c") == ["a", "b", " ", "c"]
    assert tok.detokenize(tok.tokenize(TEXTS[2])) == TEXTS[2]


def test_word_regex_and_lowercase():
    tok = make_tokenizer("word", lowercase=True)
    assert tok.tokenize("Ein Mann, fährt!") == ["ein", "mann", ",", "fährt", "!"]
    assert tok.detokenize(["a", "man", "."]) == "a man ."
    assert make_tokenizer("word", regex=r"[a-z]+").tokenize("ab1cd") == ["ab", "cd"]
    with pytest.raises(UserError, match="bad regex"):
        make_tokenizer("word", regex="(")


def test_space_tokenizer_is_exact_on_pretokenized_text():
    tok = make_tokenizer("space")
    line = "a man in an orange hat &apos;s ."
    assert tok.detokenize(tok.tokenize(line)) == line


@pytest.mark.parametrize("kind", ["char", "word", "space", "spm"])
def test_saved_tokenizer_reloads_identically(tmp_path, kind):
    tok = make_tokenizer(kind, texts=TEXTS, vocab_size=40)
    settings = save_tokenizer(tok, tmp_path, "spm.src")
    again = load_tokenizer(settings, tmp_path)
    for t in TEXTS[:3]:
        assert again.tokenize(t) == tok.tokenize(t)


def test_sentencepiece_is_lossless_and_trained_on_given_text():
    tok = make_tokenizer("spm", texts=TEXTS, vocab_size=40)
    for t in TEXTS[:3]:
        pieces = tok.tokenize(t)
        assert len(pieces) < len(t)  # pieces, not characters
        assert tok.detokenize(pieces) == t


def test_missing_sentencepiece_model_is_a_user_error(tmp_path):
    settings = save_tokenizer(make_tokenizer("spm", texts=TEXTS, vocab_size=40), tmp_path, "m")
    (tmp_path / "m.model").unlink()
    with pytest.raises(UserError, match="m.model is missing"):
        load_tokenizer(settings, tmp_path)


def test_vocab_min_freq_and_oov_to_unk():
    tok = make_tokenizer("word")
    v = Vocab.build([tok.tokenize(t) for t in ["a b b", "b c"]], min_freq=2)
    assert v.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "b"]
    assert v.encode(tok.tokenize("b a zzz")) == [4, v.unk_id, v.unk_id]
