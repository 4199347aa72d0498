"""The ONNX runtime translates with jax, flax, torch and s2s_jax all unimportable.

A small addition-gru run is saved as a real workdir (untrained: only the
plumbing matters), exported with `export_workdir`, and `python -m
export.runtime` is run in a subprocess whose `sitecustomize` makes importing
any of those packages raise. Its output must equal the in-process Translator's,
which must equal JAX greedy decoding (`search` at beam 1) of the same
checkpoint. A text export (joint SentencePiece, untrained weights) is translated
the same way, so the text front end (export/text.py, sentencepiece) needs none of
them either.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

from export.onnx_export import export_workdir
from export.runtime import Translator
from s2s_jax.data.addition import AdditionTask
from s2s_jax.decoding.search import decode_source
from s2s_jax.models import build_model
from s2s_jax.run.config import DataConfig, RunConfig
from s2s_jax.run.train import config_for_task
from s2s_jax.run.workdir import load_run, save_run
from s2s_jax.training.state import create_train_state
from tests.export.test_export_text import sentences_100, text_workdir, toy_corpus

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["12+35", "7+8", "99+99", "0+0", "41+3"]
BLOCKED = ("jax", "jaxlib", "flax", "optax", "orbax", "torch", "s2s_jax", "torch_ref")
SITECUSTOMIZE = f"""
import importlib.abc
import sys

class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ImportError("import of " + name + " is blocked: the ONNX runtime must not need it")
        return None

sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("isolation")
    task = AdditionTask(digits=2)
    cfg = config_for_task("addition-gru", task, dict(emb_dim=8, hid_dim=8))
    model = build_model(cfg)
    state = create_train_state(model, cfg, optax.adam(1e-3), 0, task.train_batch(0, 4))
    save_run(root / "run", RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset="addition-gru"),
             task, state)
    export_workdir(root / "run", root / "onnx")
    return root / "run", root / "onnx"


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO)])
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_blocker_blocks(tmp_path):
    env = _isolated_env(tmp_path)
    for module in ("torch", "jax", "s2s_jax"):
        result = _run(["-c", f"import {module}"], env)
        assert result.returncode != 0 and "is blocked" in result.stderr


@pytest.mark.parametrize("beam", [1, 3])
def test_runtime_translates_without_jax_or_torch(export_dir, tmp_path, beam):
    workdir, out = export_dir
    expected = Translator.load(out).translate(TEXTS, beam=beam)
    result = _run(["-m", "export.runtime", str(out), *TEXTS, "--beam", str(beam)], _isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
    if beam == 1:  # and the export decodes as the checkpoint does in JAX
        run = load_run(workdir)
        src, lengths = run.task.encode_inputs(TEXTS)
        model = build_model(run.config.model)
        r = jax.jit(lambda p, s, n: decode_source(model, p, s, n, max_len=run.task.max_decode_len))(run.params, src,
                                                                                                   lengths)
        assert expected == [run.task.decode_output(row) for row in np.asarray(r.tokens[:, 0])]


def test_runtime_cli_reports_bad_input(export_dir, tmp_path):
    result = _run(["-m", "export.runtime", str(export_dir[1]), "12-3"], _isolated_env(tmp_path))
    assert result.returncode == 2 and "not an addition problem" in result.stderr


def test_runtime_translates_text_without_jax_or_torch(tmp_path):
    src, tgt = toy_corpus(200, 0)
    workdir = text_workdir(tmp_path / "run", src, tgt, tokenizer="spm", spm_vocab_size=40, lowercase=True)
    export_workdir(workdir, tmp_path / "onnx")
    texts = sentences_100()[::10]
    expected = Translator.load(tmp_path / "onnx").translate(texts, beam=3)
    result = _run(["-m", "export.runtime", str(tmp_path / "onnx"), *texts, "--beam", "3"], _isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == expected
