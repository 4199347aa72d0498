"""Gradient accumulation, bf16 compute, schedules and optimizers, early stopping, TensorBoard events."""

import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import build_model
from s2s_jax.data.addition import AdditionTask
from s2s_jax.run.config import OptimizerConfig, TrainConfig
from s2s_jax.run.train import config_for_task, train
from s2s_jax.run.workdir import load_run
from s2s_jax.training.schedules import make_optimizer_from, make_schedule
from s2s_jax.training.state import create_train_state
from s2s_jax.training.steps import make_train_step
from s2s_jax.training.tb_events import EventWriter, crc32c

TASK = AdditionTask(digits=1, n_heldout=10)
CFG = config_for_task("addition-gru", TASK, {"emb_dim": 8, "hid_dim": 16, "dropout": 0.0})
MODEL = build_model(CFG)


def _state(tx, batch_size=16):
    return create_train_state(MODEL, CFG, tx, 0, TASK.train_batch(0, batch_size))


def _run(step, state, n=2, batch_size=16):
    losses = []
    for i in range(1, n + 1):
        state, m = step(state, TASK.train_batch(i, batch_size))
        losses.append(float(m["loss"]))
    return state, losses, m


def test_gradient_accumulation_equals_one_big_batch():
    tx, _ = make_optimizer_from(OptimizerConfig(lr=1e-2), 10)
    batch = TASK.train_batch(1, 16)
    # rows of different lengths, so a per-micro-batch mean would differ from the whole batch's mean
    batch["tgt_lengths"] = np.array([3, 1, 2, 3] * 4, np.int32)
    out = {}
    for k in (1, 4):
        state, m = make_train_step(MODEL, tx, accum_steps=k)(_state(tx), batch)
        out[k] = (jax.tree.map(np.asarray, state.params), {key: float(v) for key, v in m.items()})
    for a, b in zip(jax.tree.leaves(out[1][0]), jax.tree.leaves(out[4][0]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    for key in ("loss", "tokens", "correct", "grad_norm"):
        np.testing.assert_allclose(out[4][1][key], out[1][1][key], rtol=1e-5, atol=1e-6)
    assert out[1][1]["tokens"] == 36


def test_bf16_compute_keeps_float32_params_and_loss():
    tx, _ = make_optimizer_from(OptimizerConfig(lr=1e-2), 10)
    s32, l32, _ = _run(make_train_step(MODEL, tx), _state(tx))
    s16, l16, m16 = _run(make_train_step(MODEL, tx, compute_dtype=jnp.bfloat16), _state(tx))
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((s16.params, s16.opt_state)) if x.ndim)
    assert m16["loss"].dtype == jnp.float32
    assert l16 != l32  # bf16 really was used
    np.testing.assert_allclose(l16, l32, atol=0.05)  # ... and is close


def test_schedules():
    inv = make_schedule("inverse_sqrt", 1.0, warmup_steps=4)
    np.testing.assert_allclose([float(inv(c)) for c in (0, 3, 15, 99)], [0.25, 1.0, 0.5, 0.2], rtol=1e-6)
    np.testing.assert_allclose(float(make_schedule("inverse_sqrt", 1.0)(3)), 0.5, rtol=1e-6)  # 1/sqrt(4)
    cos = make_schedule("cosine", 2.0, steps=10, warmup_steps=2)
    np.testing.assert_allclose([float(cos(c)) for c in (0, 1, 2, 6, 10)], [0, 1, 2, 1, 0], atol=1e-6)
    const = make_schedule("constant", 3.0, warmup_steps=3)
    np.testing.assert_allclose([float(const(c)) for c in (0, 3, 50)], [0, 3, 3], atol=1e-6)
    with pytest.raises(ValueError, match="linear"):
        make_schedule("linear", 1.0)


@pytest.mark.parametrize("opt", [OptimizerConfig(name="sgd", lr=0.1, momentum=0.9, nesterov=True, clip_norm=0.1),
                                 OptimizerConfig(name="adamw", weight_decay=0.1, schedule="inverse_sqrt",
                                                 warmup_steps=2, label_smoothing=0.1)])
def test_other_optimizers_learn(opt):
    tx, _ = make_optimizer_from(opt, 40)
    _, losses, _ = _run(make_train_step(MODEL, tx, opt.label_smoothing), _state(tx), n=40)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_early_stopping(tmp_path):
    # a learning rate too small to change anything: the held-out loss never improves after the first evaluation
    tc = TrainConfig(steps=50, batch_size=8, eval_every=2, log_every=2, patience=2, eval_chunk=10)
    result = train(CFG, TASK, tc, tmp_path / "w", log=lambda line: None, optimizer=OptimizerConfig(lr=1e-30))
    assert result.stopped == "early stopping"
    assert [h["step"] for h in result.history] == [2, 4, 6]
    assert int(result.state.step) == 6
    # kept: the latest two checkpoints and the best one (the first evaluation: nothing improved on it)
    assert sorted(int(p.name) for p in (tmp_path / "w" / "checkpoints").iterdir()) == [2, 4, 6]
    assert load_run(tmp_path / "w", "best").step == 2 and load_run(tmp_path / "w").step == 6


def _records(path):
    data, out = path.read_bytes(), []
    while data:
        (n,) = struct.unpack("<Q", data[:8])
        out.append(data[12 : 12 + n])
        data = data[16 + n :]
    return out


def test_tensorboard_event_files(tmp_path):
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    w = EventWriter(tmp_path, purge_step=7)
    w.add_scalar("train/loss", 1.25, 9)
    w.close()
    raw = _records(w.path)
    assert len(raw) == 3
    event_pb2 = pytest.importorskip("tensorboardX.proto.event_pb2")  # an independent protobuf decoder
    from tensorboardX.record_writer import masked_crc32c

    data = w.path.read_bytes()
    assert struct.unpack("<I", data[8:12])[0] == masked_crc32c(data[:8])
    events = [event_pb2.Event.FromString(r) for r in raw]
    assert events[0].file_version == "brain.Event:2"
    assert events[1].step == 7 and events[1].session_log.status == event_pb2.SessionLog.START
    assert events[2].step == 9 and events[2].summary.value[0].tag == "train/loss"
    assert events[2].summary.value[0].simple_value == 1.25


@pytest.mark.parametrize("metric, mode, values, best", [("heldout_loss", "min", [3.0, 1.0, 2.0, 1.0, 4.0], 2),
                                                        ("exact_match", "max", [0.1, 0.5, 0.5, 0.2, 0.3], 2)])
def test_checkpoints_keep_the_latest_and_the_best(tmp_path, metric, mode, values, best):
    from s2s_jax.training.checkpoint import Checkpoints, read_manifest, select_step
    from s2s_jax.training.state import TrainState

    ckpt = Checkpoints(tmp_path, keep=2, metric=metric, mode=mode)
    for step, value in enumerate(values, start=1):
        state = TrainState(step=jnp.int32(step), params={"w": jnp.full(3, float(step))},
                           opt_state={"m": jnp.zeros(2)}, rng=None)
        ckpt.save(step, state, {"step": step}, metrics={metric: value})
    ckpt.close()
    manifest = read_manifest(tmp_path)
    assert sorted(map(int, manifest["steps"])) == sorted({best, 4, 5}) and manifest["latest"] == 5
    assert manifest["best"] == best == select_step(tmp_path, "best")
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == sorted({best, 4, 5})
