"""Weights beside a checkpoint's params: the EMA kept with `--ema-decay` (its formula, its exact resume) and
`s2s-jax average` (the mean of the chosen checkpoints, read back as `--checkpoint averaged`)."""

import json
import shutil

import jax
import numpy as np
import pytest

from s2s_jax import presets
from s2s_jax.cli import main
from s2s_jax.data.addition import AdditionTask
from s2s_jax.models import build_model
from s2s_jax.run.config import OptimizerConfig, TrainConfig
from s2s_jax.run.train import train
from s2s_jax.run.workdir import load_run
from s2s_jax.training.schedules import make_optimizer_from
from s2s_jax.training.state import create_train_state

TASK = AdditionTask(digits=1, n_heldout=10)
CFG = presets.get("addition-gru", src_vocab_size=len(TASK.src_vocab), tgt_vocab_size=len(TASK.tgt_vocab),
                  emb_dim=8, hid_dim=8, dropout=0.2)
OPT = OptimizerConfig(lr=0.01, schedule="constant", ema_decay=0.6)
TC = TrainConfig(steps=6, batch_size=8, eval_every=0, log_every=1, checkpoint_every=1, keep=10)


def _leaves(params):
    return [np.asarray(x) for x in jax.tree.leaves(params)]


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("ema") / "run"
    train(CFG, TASK, TC, path, log=lambda line: None, optimizer=OPT)
    return path


def test_ema_is_the_moving_average_of_the_saved_params(ema_run):
    tx, _ = make_optimizer_from(OPT, TC.steps)
    ema = _leaves(create_train_state(build_model(CFG), CFG, tx, TC.seed, TASK.train_batch(0, TC.batch_size)).params)
    for step in range(1, 7):
        params = _leaves(load_run(ema_run, step).params)
        ema = [0.6 * e + 0.4 * p for e, p in zip(ema, params, strict=True)]
        if step in (3, 6):
            got = _leaves(load_run(ema_run, "ema" if step == 6 else f"ema:{step}").params)
            for a, b in zip(got, ema, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(_leaves(load_run(ema_run, "ema").params)[0], _leaves(load_run(ema_run).params)[0])


def test_ema_resumes_exactly(ema_run, tmp_path):
    """Killed after step 3 was saved: the resumed run's EMA at step 6 is bitwise the uninterrupted one."""
    copy = tmp_path / "copy"
    shutil.copytree(ema_run, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for step in ("4", "5", "6"):
        del manifest["steps"][step]
    manifest["latest"] = 3
    (copy / "manifest.json").write_text(json.dumps(manifest))
    result = train(CFG, TASK, TC, copy, log=lambda line: None, optimizer=OPT)
    assert int(result.state.step) == 6
    for a, b in zip(_leaves(load_run(copy, "ema").params), _leaves(load_run(ema_run, "ema").params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_average_is_the_mean_of_the_last_checkpoints(ema_run, tmp_path, capsys):
    work = tmp_path / "avg"
    shutil.copytree(ema_run, work)
    assert main(["average", "--workdir", str(work), "--last", "3"]) == 0
    assert "averaged steps [4, 5, 6]" in capsys.readouterr().out
    want = [np.mean([_leaves(load_run(work, s).params)[i] for s in (4, 5, 6)], axis=0) for i in range(len(_leaves(
        load_run(work).params)))]
    run = load_run(work, "averaged")
    assert run.step == 6
    for a, b in zip(_leaves(run.params), want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert main(["translate", "--workdir", str(work), "--checkpoint", "averaged", "1+2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    # a second average replaces the first; a damaged one, or steps that are not kept, are one-line errors
    assert main(["average", "--workdir", str(work), "--steps", "1,2"]) == 0
    assert load_run(work, "averaged").step == 2
    assert main(["average", "--workdir", str(work), "--steps", "2,99"]) == 2
    assert "not [99]" in capsys.readouterr().err
    victim = max((p for p in (work / "averaged" / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[:-2])
    assert main(["translate", "--workdir", str(work), "--checkpoint", "averaged", "1+2"]) == 2
    assert "averaged checkpoint" in capsys.readouterr().err


def test_ema_of_a_run_without_it_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "plain"
    train(CFG, TASK, TrainConfig(steps=2, batch_size=8, eval_every=0), path, log=lambda line: None)
    assert main(["translate", "--workdir", str(path), "--checkpoint", "ema", "1+2"]) == 2
    assert "trained without --ema-decay" in capsys.readouterr().err
