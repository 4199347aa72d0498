"""Fine-tuning an imported Marian model: `s2s-jax import hf-marian DIR --data ... --steps N`, then `s2s-jax train
--workdir W`.

- two steps train from the imported weights, on data read with the model's own tokenizers (`parallel_text`,
  made-up parallel text);
- killed with SIGKILL mid-run and resumed, the run ends with bitwise the parameters and per-step losses of an
  uninterrupted one (dropout on, so the dropout RNG must be restored too). The processes share a persistent
  compilation cache, as tests/training/test_resume.py's do.
Both are `slow` (measured on the shared 2-core machine: 42 s and 72 s; a training run compiles its train step,
eval step and validation decoding), so `make test` leaves them out; `pytest -m slow tests/importers` runs them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from s2s_jax.cli.importing import import_model
from s2s_jax.run.workdir import load_run, load_run_config
from tests.importers.marian_fixture import SRC_SYLLABLES, build, sentences, target_of

STEPS = 10
CACHE = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


def _env(cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "JAX_PLATFORMS": "cpu", "JAX_COMPILATION_CACHE_DIR": str(cache), **CACHE}


def _cmd(workdir) -> list[str]:
    return [sys.executable, "-m", "s2s_jax.cli", "train", "--workdir", str(workdir), "--no-progress"]


def _losses(workdir) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (workdir / "train.jsonl").read_text().splitlines())]


def _imported(tmp_path, steps: int):
    """A trained-a-little Marian import with fine-tuning data and a run of `steps` steps (dropout 0.1)."""
    hf_dir = build(tmp_path / "hf", steps=20)
    src = sentences(SRC_SYLLABLES, 120, seed=7)
    (tmp_path / "train.src").write_text("".join(s + "\n" for s in src))
    (tmp_path / "train.tgt").write_text("".join(target_of(s) + "\n" for s in src))
    return import_model(
        "hf-marian", hf_dir, tmp_path / "imported", data=f"parallel_text:{tmp_path}/train.src,{tmp_path}/train.tgt",
        settings={"data_dir": str(tmp_path / "tfds"), "buckets": [24]},
        flags={"training": {"steps": steps, "batch_size": 8, "eval_every": 0, "checkpoint_every": 2, "log_every": 1,
                            "keep": 2}, "optimizer": {"lr": 1e-3}})


@pytest.mark.slow
def test_finetune_starts_from_the_imported_weights(tmp_path):
    from s2s_jax.run.train import saved_run, train_run

    imported = _imported(tmp_path, steps=2)
    run = load_run_config(imported)
    assert run.preset == "marian" and run.model.dropout == 0.1 and run.data.to_dict()["vocab_dir"] == str(imported)
    start = load_run(imported)
    assert start.step == 0
    result = train_run(*saved_run(imported), imported, log=lambda _: None)
    first_loss = result.train_log[0]["loss"]
    # a fresh model's loss is about log(vocab); the imported one was trained on this mapping
    assert first_loss < math.log(run.model.tgt_vocab_size) - 0.5, first_loss
    tuned = load_run(imported)
    assert tuned.step == 2
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
               for a, b in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(start.params), strict=True)) > 0


@pytest.mark.slow
def test_finetune_sigkill_resume_is_bitwise(tmp_path):
    imported = _imported(tmp_path, steps=STEPS)
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    shutil.copytree(imported, ref)
    shutil.copytree(imported, killed)
    env = _env(tmp_path / "jax_cache")

    out = subprocess.run(_cmd(ref), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]

    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log, deadline = killed / "train.jsonl", time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and any(json.loads(x)["step"] >= 5 for x in log.read_text().splitlines()[-2:] if x):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    out = subprocess.run(_cmd(killed), env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "from its checkpoint of step" in out.stdout

    tuned, again = load_run(ref), load_run(killed)
    assert tuned.step == again.step == STEPS
    for a, b in zip(jax.tree.leaves(tuned.params), jax.tree.leaves(again.params), strict=True):
        np.testing.assert_array_equal(a, b)  # bitwise
    assert _losses(killed) == _losses(ref) and [s for s, _ in _losses(ref)] == list(range(1, STEPS + 1))
