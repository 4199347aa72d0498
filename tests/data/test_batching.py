"""Length buckets: few fixed shapes, every example once per epoch, seeded order, resumable position."""

import numpy as np
import pytest

from s2s_jax.data.batching import BucketBatcher, TokenBatches, bucket_width, pad_batch
from s2s_jax.errors import UserError

LENGTHS = np.random.default_rng(0).integers(1, 30, size=103)


def test_bucket_width():
    assert [bucket_width(n, (8, 16)) for n in (1, 8, 9, 16, 17, 40)] == [8, 8, 16, 16, 32, 48]


def test_batches_have_fixed_shapes_and_cover_every_example_each_epoch():
    b = BucketBatcher(LENGTHS, 8, buckets=(8, 16, 32), seed=1)
    assert b.shapes == [8, 16, 32]
    for epoch in (0, 1):
        batches = b.epoch_batches(epoch)
        assert len(batches) == b.per_epoch
        seen = np.concatenate([idx for _, idx in batches])
        assert set(seen.tolist()) == set(range(len(LENGTHS)))
        for width, idx in batches:
            assert len(idx) == 8 and np.all(LENGTHS[idx] <= width) and width in b.shapes


def test_token_batches_hold_about_max_tokens_in_one_shape_per_bucket():
    rule = TokenBatches(max_tokens=100, multiple=2)
    b = BucketBatcher(LENGTHS, rule, buckets=(8, 16, 32), seed=1)
    assert b.rows == {8: 12, 16: 6, 32: 2}  # 100 // width, down to a multiple of 2
    shapes = {(w, len(idx)) for w, idx in b.epoch_batches(0)}
    assert shapes == {(8, 12), (16, 6), (32, 2)}  # one compiled shape per bucket, as with sentence batches
    assert all(w * n <= 100 for w, n in shapes)
    seen = np.concatenate([idx for _, idx in b.epoch_batches(0)])
    assert set(seen.tolist()) == set(range(len(LENGTHS)))  # every example, each epoch
    again = BucketBatcher(LENGTHS, TokenBatches(100, 2), buckets=(8, 16, 32), seed=1)
    assert [x[1].tolist() for x in again.epoch_batches(2)] == [x[1].tolist() for x in b.epoch_batches(2)]
    assert TokenBatches(10, multiple=4).rows(32) == 4  # never fewer rows than the devices need
    with pytest.raises(UserError, match="different data or settings"):
        BucketBatcher(LENGTHS, TokenBatches(200, 2), buckets=(8, 16, 32), seed=1).load_state_dict(b.state_dict())


def test_order_depends_on_seed_and_epoch_only():
    a, b = BucketBatcher(LENGTHS, 8, seed=1), BucketBatcher(LENGTHS, 8, seed=1)
    same = [x[1].tolist() for x in a.epoch_batches(3)] == [x[1].tolist() for x in b.epoch_batches(3)]
    assert same
    assert [x[1].tolist() for x in a.epoch_batches(0)] != [x[1].tolist() for x in a.epoch_batches(1)]
    assert [x[1].tolist() for x in a.epoch_batches(0)] != [x[1].tolist() for x in
                                                           BucketBatcher(LENGTHS, 8, seed=2).epoch_batches(0)]


def test_state_dict_resumes_exactly():
    a = BucketBatcher(LENGTHS, 8, seed=5)
    for _ in range(a.per_epoch + 3):  # past an epoch boundary
        next(a)
    state = a.state_dict()
    expected = [next(a)[1].tolist() for _ in range(4)]
    b = BucketBatcher(LENGTHS, 8, seed=5)
    b.load_state_dict(state)
    assert [next(b)[1].tolist() for _ in range(4)] == expected
    assert b.batch_at(a.per_epoch + 3)[1].tolist() == expected[0]  # random access agrees with iteration
    with pytest.raises(UserError, match="different data or settings"):
        BucketBatcher(LENGTHS, 4, seed=5).load_state_dict(state)


def test_pad_batch_builds_teacher_forcing_rows():
    b = pad_batch([np.array([5, 6]), np.array([7])], [np.array([8]), np.array([9, 10])], 4, pad_id=0, bos_id=1,
                  eos_id=2)
    assert b["src"].tolist() == [[5, 6, 0, 0], [7, 0, 0, 0]] and b["src_lengths"].tolist() == [2, 1]
    assert b["tgt_in"].tolist() == [[1, 8, 0, 0], [1, 9, 10, 0]]
    assert b["tgt_out"].tolist() == [[8, 2, 0, 0], [9, 10, 2, 0]] and b["tgt_lengths"].tolist() == [2, 3]
