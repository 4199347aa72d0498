"""Seed 002's addition task: exact string format, ids, disjoint splits, user-string conversion."""

import numpy as np
import pytest

from s2s_jax.data.addition import CHARS, AdditionTask, addition_vocab, format_problem
from s2s_jax.errors import UserError


def test_seed_format_examples():
    assert format_problem(12, 34, 2) == ("12+34}", "_46}")
    assert format_problem(2, 3, 2) == ("__2+3}", "__5}")
    assert format_problem(67, 89, 2) == ("67+89}", "156}")
    assert format_problem(5, 7, 3) == ("____5+7}", "__12}")


def test_vocab_ids_are_positions_in_chars():
    v = addition_vocab()
    assert v.tokens == list(CHARS)
    assert (v.pad_id, v.bos_id, v.eos_id, v.unk_id) == (11, 12, 13, None)
    assert v.encode("7+") == [7, 10]


def test_batch_layout():
    task = AdditionTask(digits=2)
    b = task.batch(np.array([[12, 34], [2, 3]]))
    ids = addition_vocab().encode
    np.testing.assert_array_equal(b["src"], [ids("12+34}"), ids("__2+3}")])
    np.testing.assert_array_equal(b["tgt_out"], [ids("_46}"), ids("__5}")])
    np.testing.assert_array_equal(b["tgt_in"], [ids("{_46"), ids("{__5")])
    # `_` is a real token: every row is full length, and the lengths (not pad_id) say so.
    np.testing.assert_array_equal(b["src_lengths"], [6, 6])
    np.testing.assert_array_equal(b["tgt_lengths"], [4, 4])
    assert all(x.dtype == np.int32 for x in b.values())


def test_train_and_heldout_disjoint_and_deterministic():
    task = AdditionTask(digits=2, seed=3)
    assert len(set(task.heldout_keys.tolist())) == 1000
    heldout = set(map(tuple, task.pairs(task.heldout_keys).tolist()))
    seen = set()
    for step in range(20):
        b = task.train_batch(step, 256)
        a = [int(task.decode_input(row).split("+")[0]) for row in b["src"]]
        c = [int(task.decode_input(row).split("+")[1]) for row in b["src"]]
        seen |= set(zip(a, c, strict=True))
    assert not seen & heldout
    assert len(seen) > 3000  # training really covers the rest of the space
    again = AdditionTask(digits=2, seed=3)
    np.testing.assert_array_equal(again.heldout_keys, task.heldout_keys)
    np.testing.assert_array_equal(again.train_batch(7, 8)["src"], task.train_batch(7, 8)["src"])
    assert not np.array_equal(AdditionTask(digits=2, seed=4).heldout_keys, task.heldout_keys)


def test_large_digit_counts_sample_without_enumerating():
    task = AdditionTask(digits=9, seed=0, n_heldout=50)
    assert task.space == 10**18
    b = task.train_batch(0, 64)
    assert b["src"].shape == (64, 20) and b["tgt_out"].shape == (64, 11)
    row = task.decode_input(b["src"][0])
    a, c = map(int, row.split("+"))
    assert task.decode_output(b["tgt_out"][0]) == str(a + c)
    assert not task.is_heldout(task.sample_train_keys(np.random.default_rng(0), 1000)).any()
    assert task.is_heldout(task.heldout_keys).all()


def test_user_strings():
    task = AdditionTask(digits=2)
    src, lengths = task.encode_inputs(["12+35", " 1 + 99 ", "007+3"])
    assert [task.decode_input(r) for r in src] == ["12+35", "1+99", "7+3"]
    np.testing.assert_array_equal(lengths, [6, 6, 6])
    assert task.decode_output(addition_vocab().encode("_47}__")) == "47"
    assert task.decode_output(addition_vocab().encode("100}")) == "100"


@pytest.mark.parametrize(
    "text, message",
    [("12*3", "not an addition problem"), ("12+", "not an addition problem"), ("1+2+3", "not an addition problem"),
     ("123+4", "more than 2 digits"), ("", "not an addition problem"), ("-1+2", "not an addition problem")],
)
def test_bad_user_strings(text, message):
    with pytest.raises(UserError, match=message):
        AdditionTask(digits=2).encode_inputs(["1+1", text])


def test_bad_settings():
    with pytest.raises(UserError, match="digits"):
        AdditionTask(digits=0)
    with pytest.raises(UserError, match="n_heldout"):
        AdditionTask(digits=1, n_heldout=80)
