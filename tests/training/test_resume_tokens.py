"""`--max-tokens` batches stay a pure function of (seed, step): a text run killed with SIGKILL and resumed ends
bitwise where the uninterrupted one does, with the same per-step losses and token counts."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from s2s_jax.run.workdir import load_run

WORDS = ["rot", "blau", "grün", "hund", "katze", "haus", "baum", "ein", "der"]


def _args(root):
    rng = np.random.default_rng(0)
    files = []
    for split, n in (("train", 240), ("validation", 8)):
        src = [" ".join(rng.choice(WORDS, int(rng.integers(1, 14)))) for _ in range(n)]
        (root / f"{split}.de").write_text("\n".join(src) + "\n")
        (root / f"{split}.en").write_text("\n".join(s.upper() for s in src) + "\n")
        files.append(f"{split}={root / f'{split}.de'},{root / f'{split}.en'}")
    return ["--preset", "bentrevett-gru", "--data", "parallel_text:" + ";".join(files), "--data-dir",
            str(root / "tfds"), "--min-freq", "1", "--buckets", "8,16", "--max-tokens", "96", "--steps", "30",
            "--eval-every", "0", "--checkpoint-every", "5", "--log-every", "1", "--no-progress",
            "--set", "emb_dim=8", "--set", "hid_dim=8", "--set", "dropout=0.2"]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(root / "cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return root, _args(root), env


def _cmd(workdir, args):
    return [sys.executable, "-m", "s2s_jax.cli", "train", "--workdir", str(workdir), *args]


def _log(workdir):
    return [(r["step"], r["loss"], r["tokens"]) for r in map(json.loads, (workdir / "train.jsonl").read_text().split(
        "\n")[:-1])]


def test_sigkill_then_resume_with_token_batches_is_exact(setting):
    root, args, env = setting
    ref = root / "ref"
    out = subprocess.run(_cmd(ref, args), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {n for _, _, n in _log(ref)}
    assert len(rows) > 1  # batches of different widths carry different numbers of target tokens

    killed = root / "killed"
    proc = subprocess.Popen(_cmd(killed, args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        log = killed / "train.jsonl"
        if log.exists() and any(json.loads(x)["step"] >= 13 for x in log.read_text().splitlines()[-3:] if x):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    out = subprocess.run(_cmd(killed, args), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "resumed" in out.stdout, out.stderr[-2000:]
    assert _log(killed) == _log(ref)
    for a, b in zip(jax.tree.leaves(load_run(killed).params), jax.tree.leaves(load_run(ref).params), strict=True):
        np.testing.assert_array_equal(a, b)
