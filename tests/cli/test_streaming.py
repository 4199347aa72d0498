"""`translate` as a user runs it, in real processes: it answers stdin line by line as lines arrive (interactive
use, as `fairseq-interactive`), a second call compiles nothing (JAX's persistent cache), and a reader prints
nothing on stderr (no false "read only" warnings)."""

import os
import queue
import subprocess
import sys
import threading

import pytest

from s2s_jax.cli import main

TINY = ["--digits", "1", "--steps", "30", "--batch-size", "16", "--eval-every", "0", "--set", "emb_dim=8",
        "--set", "hid_dim=8"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "run"
    assert main(["train", "--preset", "addition-gru", "--workdir", str(path), *TINY, "--no-progress"]) == 0
    return path


def _env(cache):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_FLAGS", "JAX_COMPILATION_CACHE"))}
    return {**env, "JAX_PLATFORMS": "cpu", "S2S_JAX_CACHE_DIR": str(cache)}


def _translate(workdir, cache, *inputs):
    return subprocess.run([sys.executable, "-m", "s2s_jax.cli", "translate", "--workdir", str(workdir), *inputs],
                          env=_env(cache), capture_output=True, text=True, timeout=300)


def test_each_line_is_answered_as_it_arrives(workdir, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "s2s_jax.cli", "translate", "--workdir", str(workdir)],
                            env=_env(tmp_path / "cache"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, bufsize=1)
    answers: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [answers.put(line) for line in proc.stdout], daemon=True).start()
    try:
        got = []
        for problem in ("1+2", "3+4", "5+4"):
            proc.stdin.write(problem + "\n")
            proc.stdin.flush()  # stdin stays open: a translator that waits for its end never answers
            got.append(answers.get(timeout=120).rstrip("\n"))
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    whole = _translate(workdir, tmp_path / "cache", "1+2", "3+4", "5+4")
    assert whole.stdout.splitlines() == got  # the same answers as in one batch
    assert proc.stderr.read() == ""


def test_a_second_translate_compiles_nothing_and_warns_nothing(workdir, tmp_path):
    cache = tmp_path / "cache"
    first = _translate(workdir, cache, "1+2")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    entries = set(os.listdir(cache))
    assert entries  # every compiled program was written to the cache
    second = _translate(workdir, cache, "1+2")
    assert second.returncode == 0 and second.stderr == "", second.stderr
    assert second.stdout == first.stdout
    assert set(os.listdir(cache)) == entries  # ... and the second call found them all
