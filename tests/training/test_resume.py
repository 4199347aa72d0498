"""Exact resume: a run killed with SIGKILL (mid-run, twice, and in the middle of writing a checkpoint) or stopped
with Ctrl-C and resumed ends with bitwise the parameters of an uninterrupted run, with the same per-step losses
(same data order, same dropout draws), the same best checkpoint, held-out records and TensorBoard curve."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from s2s_jax.run.workdir import load_run
from s2s_jax.training.checkpoint import KILL_DURING_SAVE, read_manifest
from s2s_jax.training.locks import PID_FILE
from tests.helpers import tensorboard_curve

# dropout on, so the dropout RNG must be restored too; log every step to compare the whole loss curve
ARGS = ["--preset", "addition-gru", "--digits", "1", "--steps", "60", "--batch-size", "8", "--eval-every", "10",
        "--checkpoint-every", "5", "--log-every", "1", "--keep", "2", "--no-progress",
        "--set", "emb_dim=8", "--set", "hid_dim=8", "--set", "dropout=0.2"]


def _cmd(workdir):
    return [sys.executable, "-m", "s2s_jax.cli", "train", "--workdir", str(workdir), *ARGS]


# The runs share a persistent compilation cache: every run after the first loads the same executables
# instead of compiling them again (seconds each on a CPU), which also makes bitwise comparison meaningful.
CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    CACHE["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax_cache"))


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", **CACHE, **extra}


def _train(workdir, **env):
    out = subprocess.run(_cmd(workdir), env=_env(**env), capture_output=True, text=True, timeout=300)
    return out


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in map(json.loads, (workdir / "train.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("resume") / "ref"
    out = _train(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    return workdir, load_run(workdir).params


def _assert_same_run(workdir, reference):
    ref_dir, ref_params = reference
    run = load_run(workdir)
    assert run.step == 60
    for a, b in zip(jax.tree.leaves(run.params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise
    assert _losses(workdir) == _losses(ref_dir)  # every step's batch and dropout draw were the same
    assert [s for s, _ in _losses(workdir)] == list(range(1, 61))  # none lost, none twice
    for name in ("metrics.jsonl",):  # the held-out evaluations, each once
        assert (workdir / name).read_text() == (ref_dir / name).read_text()
    ours, theirs = read_manifest(workdir), read_manifest(ref_dir)
    assert ours["best"] == theirs["best"] is not None and ours["steps"].keys() == theirs["steps"].keys()
    assert load_run(workdir, "best").step == theirs["best"]
    for tag in ("train/loss", "heldout/heldout_loss"):  # the curves TensorBoard draws
        assert tensorboard_curve(workdir / "tb", tag) == tensorboard_curve(ref_dir / "tb", tag)
    assert [s for s, _ in tensorboard_curve(workdir / "tb", "train/loss")] == list(range(1, 61))


def _start_and_stop(workdir, at_step, sig):
    """Start the run, send `sig` once train.jsonl reaches `at_step`; (returncode, stdout, stderr)."""
    proc = subprocess.Popen(_cmd(workdir), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = workdir / "train.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and any(json.loads(x)["step"] >= at_step for x in log.read_text().splitlines()[-3:] if x):
            proc.send_signal(sig)
            break
        time.sleep(0.005)
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


def test_two_sigkills_then_resume_is_exact(reference, tmp_path):
    workdir = tmp_path / "killed"
    for at_step in (22, 44):  # killed twice, resumed each time
        before = read_manifest(workdir)["latest"] if (workdir / "manifest.json").exists() else None
        code, _, _ = _start_and_stop(workdir, at_step, signal.SIGKILL)
        assert code == -signal.SIGKILL, "the run ended before it could be killed"
        saved = read_manifest(workdir)["latest"]
        assert saved is not None and saved < 60 and (before is None or saved > before)
        assert (workdir / PID_FILE).exists()  # a killed trainer cannot clean up: the next one must cope
    out = _train(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from its checkpoint of step {saved}" in out.stdout
    assert "ended without closing the workdir" in out.stdout  # the dead trainer's train.pid was noticed
    _assert_same_run(workdir, reference)
    assert len(list((workdir / "tb").glob("events.out.tfevents.*"))) == 3  # each later one purges redone steps


def test_ctrl_c_saves_the_step_and_resume_is_exact(reference, tmp_path):
    workdir = tmp_path / "interrupted"
    code, out, err = _start_and_stop(workdir, 22, signal.SIGINT)
    assert code == 130 and "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    stopped = int(out.split("interrupted by SIGINT at step ")[1].split(";")[0])
    assert stopped >= 22 and read_manifest(workdir)["latest"] == stopped  # nothing since the last save is lost
    assert _losses(workdir)[-1][0] == stopped
    out = _train(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from its checkpoint of step {stopped}" in out.stdout
    _assert_same_run(workdir, reference)


def test_sigkill_during_a_checkpoint_save_is_never_picked_up(reference, tmp_path):
    workdir = tmp_path / "killed_in_save"
    out = _train(workdir, **{KILL_DURING_SAVE: "30"})
    assert out.returncode == -signal.SIGKILL
    leftovers = sorted(p.name for p in (workdir / "checkpoints").iterdir())
    assert "30.orbax-checkpoint-tmp" in leftovers and "30" not in leftovers  # died half-way through writing 30
    assert read_manifest(workdir)["latest"] == 25
    out = _train(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "from its checkpoint of step 25" in out.stdout
    assert not any(p.name.endswith("tmp") for p in (workdir / "checkpoints").iterdir())  # cleaned up
    _assert_same_run(workdir, reference)


def test_unlisted_finished_step_is_not_trusted(reference, tmp_path):
    """A step orbax finished but the manifest never listed (killed in between) is dropped and redone."""
    import shutil

    workdir = tmp_path / "copy"
    shutil.copytree(reference[0], workdir)
    manifest = json.loads((workdir / "manifest.json").read_text())
    latest = manifest["latest"]
    del manifest["steps"][str(latest)]
    manifest["latest"] = max(int(s) for s in manifest["steps"])
    (workdir / "manifest.json").write_text(json.dumps(manifest))
    out = _train(workdir)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"from its checkpoint of step {manifest['latest']}" in out.stdout
    _assert_same_run(workdir, reference)


def test_changed_config_is_refused_and_nothing_is_touched(reference, tmp_path, capsys):
    from s2s_jax.cli import main

    ref_dir = reference[0]
    before = {p: p.read_bytes() for p in Path(ref_dir).rglob("*") if p.is_file()}
    argv = ["train", "--workdir", str(ref_dir), *ARGS]
    argv[argv.index("--steps") + 1] = "80"
    assert main(argv + ["--set", "optimizer.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "cannot be resumed" in err and "training.steps: saved 60, now 80" in err
    assert "optimizer.lr: saved 0.003, now 0.01" in err and "Traceback" not in err
    after = {p: p.read_bytes() for p in Path(ref_dir).rglob("*") if p.is_file()}
    assert after == before
