"""The keep policy of a run's checkpoints: the latest N and the best survive any number of reopens (the manifest
holds the metrics, not orbax's in-process state), and a step a reader is reading is deleted only after it is done."""

import jax.numpy as jnp

from s2s_jax.training.checkpoint import Checkpoints, read_manifest, select_step
from s2s_jax.training.locks import reading_checkpoints
from s2s_jax.training.state import TrainState


def _state(step):
    return TrainState(step=jnp.int32(step), params={"w": jnp.full(3, float(step))}, opt_state={"m": jnp.zeros(2)},
                      rng=None)


def _save(ckpt, step, loss=None):
    ckpt.save(step, _state(step), {"step": step}, metrics=None if loss is None else {"heldout_loss": loss})


def _on_disk(path):
    return sorted(int(p.name) for p in (path / "checkpoints").iterdir() if p.name.isdigit())


def test_best_survives_reopening_and_saves_without_metrics(tmp_path):
    # the run: best 500, latest 550 (checkpoints 500/550/600 written by periodic saves), reopened twice
    ckpt = Checkpoints(tmp_path, keep=1, metric="heldout_loss", mode="min")
    _save(ckpt, 500, loss=1.0)
    _save(ckpt, 550)  # a periodic checkpoint: no evaluation, no metrics
    ckpt.close()
    for step in (600, 650):  # each in a new process as far as the policy knows: reopened, then one save
        ckpt = Checkpoints(tmp_path, keep=1, metric="heldout_loss", mode="min")
        _save(ckpt, step)
        ckpt.close()
    manifest = read_manifest(tmp_path)
    assert manifest["best"] == 500 == select_step(tmp_path, "best")
    assert sorted(map(int, manifest["steps"])) == [500, 650] == _on_disk(tmp_path)
    assert manifest["steps"]["500"]["metrics"] == {"heldout_loss": 1.0}
    # a better evaluation after a reopen replaces it
    ckpt = Checkpoints(tmp_path, keep=1, metric="heldout_loss", mode="min")
    _save(ckpt, 700, loss=0.5)
    ckpt.close()
    assert read_manifest(tmp_path)["best"] == 700 and _on_disk(tmp_path) == [700]


def test_a_reader_holds_off_deletion_until_it_is_done(tmp_path):
    ckpt = Checkpoints(tmp_path, keep=1, metric="heldout_loss", mode="min", use_async=False)
    _save(ckpt, 1)
    ckpt._finish_pending()
    with reading_checkpoints(tmp_path / "checkpoints"):  # a reader chose step 1 and is reading it
        _save(ckpt, 2)
        ckpt._finish_pending()
        assert sorted(read_manifest(tmp_path)["steps"]) == ["2"]  # no longer listed: no new reader picks it
        assert _on_disk(tmp_path) == [1, 2]  # but still there for the one reading it
    _save(ckpt, 3)  # the next save deletes what the reader held off
    ckpt.close()
    assert _on_disk(tmp_path) == [3]
