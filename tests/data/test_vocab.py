"""Vocab: specials and their ids, min_freq, OOV handling, JSON round trip."""

import pytest

from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError

SENTS = [["a", "b", "b"], ["c", "b", "a"], ["d"]]


def test_build_orders_specials_then_frequency():
    v = Vocab.build(SENTS)
    assert v.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "b", "a", "c", "d"]
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (0, 1, 2, 3)


def test_min_freq_and_max_size():
    assert Vocab.build(SENTS, min_freq=2).tokens[4:] == ["b", "a"]
    assert Vocab.build(SENTS, max_size=5).tokens[4:] == ["b"]


def test_configurable_specials_and_order():
    v = Vocab.build(SENTS, order=("unk", "pad", "bos", "eos"), pad="_", bos=None)
    assert v.tokens[:3] == ["<unk>", "_", "<eos>"]
    assert (v.unk_id, v.pad_id, v.bos_id, v.eos_id) == (0, 1, None, 2)


def test_encode_decode_oov_to_unk():
    v = Vocab.build(SENTS)
    ids = v.encode(["a", "zzz", "b"], bos=True, eos=True)
    assert ids == [1, 5, 3, 4, 2]
    assert v.decode(ids) == ["a", "<unk>", "b"]
    assert v.decode(ids + [6], stop_at_eos=False) == ["a", "<unk>", "b", "c"]
    assert v.decode([4, 0, 0], strip_specials=False) == ["b", "<pad>", "<pad>"]


def test_no_unk_rejects_oov():
    v = Vocab(["x", "y", "_"], pad="_", bos=None, eos=None, unk=None)
    with pytest.raises(UserError, match="'z' is not in the vocabulary"):
        v.encode("xz")
    with pytest.raises(UserError, match="no bos"):
        v.encode("x", bos=True)


def test_invalid_vocabs():
    with pytest.raises(UserError, match="duplicate"):
        Vocab(["a", "a"], pad=None, bos=None, eos=None, unk=None)
    with pytest.raises(UserError, match="pad symbol"):
        Vocab(["a"], pad="<pad>", bos=None, eos=None, unk=None)


def test_json_round_trip(tmp_path):
    v = Vocab.build(SENTS, pad="_", unk=None)
    v.save(tmp_path / "vocab.json")
    w = Vocab.load(tmp_path / "vocab.json")
    assert w == v and w.tokens == v.tokens and w.unk_id is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Vocab.load(tmp_path / "bad.json")
    with pytest.raises(UserError, match="does not exist"):
        Vocab.load(tmp_path / "missing.json")
