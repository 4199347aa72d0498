"""Loss masking, jitted steps, param_init, the loop, and the workdir checkpoint round trip."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from s2s_jax import build_model
from s2s_jax.config import ConfigError
from s2s_jax.data.addition import AdditionTask
from s2s_jax.errors import UserError
from s2s_jax.run.config import OptimizerConfig, TrainConfig
from s2s_jax.run.train import config_for_task, train
from s2s_jax.run.workdir import load_run, load_run_config, save_run
from s2s_jax.training.metrics import exact_match, sum_in_chunks
from s2s_jax.training.state import create_train_state
from s2s_jax.training.steps import (
    make_eval_step,
    make_optimizer,
    make_train_step,
    masked_cross_entropy,
    target_is_max,
    target_mask,
)

TINY = {"emb_dim": 8, "hid_dim": 16}


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_masked_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (3, 4))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    nll = -np.take_along_axis(_log_softmax(logits), targets[..., None], -1)[..., 0]
    total, n = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask))
    np.testing.assert_allclose(total, (nll * mask).sum(), rtol=1e-5)
    assert n == 7
    eps = 0.1
    smooth = (1 - eps) * nll - eps / 5 * _log_softmax(logits).sum(-1)
    total, _ = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(mask), eps)
    np.testing.assert_allclose(total, (smooth * mask).sum(), rtol=1e-5)


def test_target_is_max_is_argmax_hit_but_for_ties():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 6, 7)).astype(np.float32)
    targets = rng.integers(0, 7, (4, 6))
    targets[1] = np.argmax(logits[1], -1)  # some hits for sure
    hits = np.asarray(target_is_max(jnp.asarray(logits), jnp.asarray(targets)))
    np.testing.assert_array_equal(hits, np.argmax(logits, -1) == targets)
    assert hits.any() and not hits.all()
    tied = np.zeros((1, 1, 7), np.float32)  # every logit the maximum: any target is a hit
    assert np.asarray(target_is_max(jnp.asarray(tied), jnp.asarray([[5]]))).all()


def test_mask_comes_from_lengths_not_pad_id():
    task = AdditionTask(digits=2)
    batch = task.batch(np.array([[2, 3], [40, 50]]))  # targets `__5}` and `_90}`: pad symbols to predict
    assert (batch["tgt_out"] == task.tgt_vocab.pad_id).any()
    np.testing.assert_array_equal(target_mask(batch), np.ones((2, 4)))
    short = dict(batch, tgt_lengths=np.array([4, 2], np.int32))
    np.testing.assert_array_equal(target_mask(short), [[1, 1, 1, 1], [1, 1, 0, 0]])


@pytest.mark.parametrize("spec, check", [("normal:0.01", lambda x: 0.005 < x.std() < 0.02),
                                         ("uniform:0.08", lambda x: np.abs(x).max() <= 0.08)])
def test_param_init_is_honoured(spec, check):
    task = AdditionTask(digits=1, n_heldout=10)
    cfg = config_for_task("addition-gru", task, {**TINY, "param_init": spec})
    state = create_train_state(build_model(cfg), cfg, make_optimizer(1e-3), 0, task.train_batch(0, 4))
    leaves = jax.tree.leaves(state.params)
    assert all(check(np.asarray(x)) for x in leaves if x.size > 8)
    emb = np.asarray(state.params["src_embed"]["embedding"])
    assert np.abs(emb).max() < 0.1  # the default N(0, 1) embedding init was replaced


def test_train_step_learns_and_threads_state():
    task = AdditionTask(digits=1, n_heldout=10)
    cfg = config_for_task("addition-gru", task, {**TINY, "dropout": 0.0})
    model, tx = build_model(cfg), make_optimizer(1e-2, clip_norm=1.0)
    state = create_train_state(model, cfg, tx, 0, task.train_batch(0, 32))
    step = make_train_step(model, tx)
    first_rng = np.asarray(state.rng)
    losses = []
    for i in range(60):
        old = state
        state, metrics = step(state, task.train_batch(i, 32))
        losses.append(float(metrics["loss"]))
    assert jax.tree.leaves(old.params)[0].is_deleted()  # the state was donated
    assert int(state.step) == 60
    assert not np.array_equal(np.asarray(state.rng), first_rng)
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])
    assert float(metrics["tokens"]) == 32 * 3 and 0 <= float(metrics["correct"]) <= 96

    ev = make_eval_step(model)
    batch = task.heldout_batch()
    whole = ev(state.params, batch)
    halves = [ev(state.params, {k: v[s] for k, v in batch.items()}) for s in (slice(0, 5), slice(5, 10))]
    for key in ("loss_sum", "tokens", "correct"):
        np.testing.assert_allclose(whole[key], halves[0][key] + halves[1][key], rtol=1e-5)


def test_exact_match():
    tgt = np.array([[5, 6, 2], [5, 6, 2], [5, 6, 2], [7, 2, 0]])
    pred = np.array([[5, 6, 2, 0], [5, 6, 6, 2], [5, 7, 2, 0], [7, 2, 0, 0]])
    hits = exact_match(pred, [3, 4, 3, 2], tgt, [3, 3, 3, 2])
    np.testing.assert_array_equal(hits, [True, False, False, True])


def test_config_for_task_and_settings_errors():
    task = AdditionTask(digits=2)
    cfg = config_for_task("addition-gru", task, {"hid_dim": 32})
    assert (cfg.src_vocab_size, cfg.pad_id, cfg.bos_id, cfg.eos_id, cfg.hid_dim) == (14, 11, 12, 13, 32)
    with pytest.raises(ConfigError, match="come from the task"):
        config_for_task("addition-gru", task, {"eos_id": 3})
    with pytest.raises(ConfigError, match="unknown preset"):
        config_for_task("nope", task)
    with pytest.raises(UserError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(UserError, match="schedule"):
        OptimizerConfig(schedule="linear")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("run") / "w"
    task = AdditionTask(digits=1, n_heldout=10)
    cfg = config_for_task("addition-gru", task, TINY)
    lines = []
    tc = TrainConfig(steps=40, batch_size=16, eval_every=20, log_every=10)
    opt = OptimizerConfig(schedule="cosine", warmup_steps=5)
    result = train(cfg, task, tc, workdir=workdir, log=lines.append, optimizer=opt)
    return workdir, cfg, result, lines


def test_loop_logs_evaluates_and_saves(trained):
    workdir, cfg, result, lines = trained
    assert sum(line.startswith("step ") and "steps/s" in line for line in lines) == 4
    assert [h["step"] for h in result.history] == [20, 40]
    assert 0.0 <= result.exact_match <= 1.0 and result.exact_match == result.history[-1]["exact_match"]
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"] == cfg.to_dict()
    assert config["data"] == {"name": "addition", "digits": 1, "seed": 0, "n_heldout": 10}
    assert config["training"]["steps"] == 40
    assert json.loads((workdir / "vocab.json").read_text())["tgt"]["specials"]["eos"] == "}"
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert logged == result.history


def test_workdir_round_trip(trained):
    workdir, cfg, result, _ = trained
    run = load_run(workdir)
    assert run.config.model == cfg and run.step == 40 and run.task.settings() == {
        "name": "addition", "digits": 1, "seed": 0, "n_heldout": 10}
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(result.state.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_workdir_errors(trained, tmp_path):
    workdir, _, result, _ = trained
    with pytest.raises(UserError, match="already holds a run"):  # the writer never overwrites a run
        save_run(workdir, load_run_config(workdir), AdditionTask(digits=1, n_heldout=10), result.state)
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json is missing"):
        load_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_run(bad)
    # A vocab that does not match the task, and a config without a checkpoint.
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text((workdir / "config.json").read_text())
    vocab = json.loads((workdir / "vocab.json").read_text())
    vocab["tgt"]["tokens"][0] = "x"
    (other / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="does not match"):
        load_run(other)
    (other / "vocab.json").write_text((workdir / "vocab.json").read_text())
    with pytest.raises(UserError, match="no complete checkpoint"):
        load_run(other)
    # A config whose sizes disagree with the saved parameters.
    config = json.loads((workdir / "config.json").read_text())
    config["model"]["hid_dim"] = 32
    (other / "config.json").write_text(json.dumps(config))
    (other / "checkpoints").symlink_to(workdir.absolute() / "checkpoints")
    (other / "manifest.json").write_text((workdir / "manifest.json").read_text())
    with pytest.raises(UserError, match=r"does not match config.json: \['decoder'\]\['l0'\]\['bias_hh'\] has shape"):
        load_run(other)


def test_corrupt_checkpoint_is_reported(trained, tmp_path):
    workdir, _, _, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    data = sorted(p for p in (copy / "checkpoints" / "40").rglob("*") if p.is_file() and "params" in p.parts)
    biggest = max(data, key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:-1])
    with pytest.raises(UserError, match="is corrupt: .* changed since it was saved"):
        load_run(copy)
    biggest.unlink()
    with pytest.raises(UserError, match="is corrupt: .* is missing"):
        load_run(copy)


def test_sum_in_chunks_ignores_filler_rows():
    task = AdditionTask(digits=1, n_heldout=10)
    cfg = config_for_task("addition-gru", task, TINY)
    model = build_model(cfg)
    params = create_train_state(model, cfg, make_optimizer(1e-3), 0, task.train_batch(0, 4)).params
    ev = make_eval_step(model)
    batch = task.heldout_batch()
    whole = ev(params, batch)
    chunked = sum_in_chunks(ev, params, batch, 4)  # 4 + 4 + (2 real + 2 filler)
    for key in ("loss_sum", "tokens", "correct"):
        np.testing.assert_allclose(chunked[key], float(whole[key]), rtol=1e-5)
