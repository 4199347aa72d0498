"""A live run with real processes: the workdir has one trainer (a second one is refused at once, naming the first's
PID), readers beside it never fail (even while it deletes checkpoints it no longer keeps), and SIGTERM makes it
save and exit cleanly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from s2s_jax.cli import main
from s2s_jax.training.checkpoint import read_manifest
from s2s_jax.training.locks import PID_FILE

# a checkpoint every 3 steps and only the latest kept: the trainer deletes a step every few milliseconds
ARGS = ["--preset", "addition-gru", "--digits", "1", "--steps", "1000000", "--batch-size", "8", "--eval-every", "0",
        "--checkpoint-every", "3", "--keep", "1", "--log-every", "10", "--no-progress",
        "--set", "emb_dim=8", "--set", "hid_dim=8"]


def _cmd(workdir):
    return [sys.executable, "-m", "s2s_jax.cli", "train", "--workdir", str(workdir), *ARGS]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("jax_cache"))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": cache,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _wait_for(predicate, proc, seconds=180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_one_trainer_readers_beside_it_and_sigterm(tmp_path, env, capsys):
    workdir = tmp_path / "live"
    trainer = subprocess.Popen(_cmd(workdir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (workdir / "manifest.json").exists(), trainer)
        assert (workdir / PID_FILE).read_text().strip() == str(trainer.pid)

        second = subprocess.run(_cmd(workdir), env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        err = second.stderr.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in second.stderr, second.stderr
        assert f"workdir {workdir} is in use by PID {trainer.pid}" in err[0]

        answers = []
        for _ in range(50):  # readers beside the live run: every call succeeds
            assert main(["translate", "--workdir", str(workdir), "--checkpoint", "latest", "1+2"]) == 0
            out = capsys.readouterr()
            assert out.err == "" and len(out.out.splitlines()) == 1, out.err
            answers.append(out.out)
        assert trainer.poll() is None, "the run ended before the readers were done: not a live-run test"
        assert read_manifest(workdir)["latest"] >= 30  # it checkpointed (and deleted) all along

        trainer.send_signal(signal.SIGTERM)
        stdout, stderr = trainer.communicate(timeout=120)
    finally:
        if trainer.poll() is None:
            trainer.kill()
    assert trainer.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr
    line = [s for s in stdout.splitlines() if s.startswith("interrupted by SIGTERM at step ")]
    assert len(line) == 1, stdout[-2000:]
    stopped_at = int(line[0].split("at step ")[1].split(";")[0])
    assert read_manifest(workdir)["latest"] == stopped_at  # the interrupted step itself was saved
    logged = [json.loads(x)["step"] for x in (workdir / "train.jsonl").read_text().splitlines()]
    assert logged[-1] == stopped_at and len(logged) == len(set(logged))  # its partial interval logged, once
    assert not (workdir / PID_FILE).exists()  # released
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == [str(stopped_at)]  # keep 1: the rest gone
