"""`s2s-jax parity` and `s2s-jax export`, and the rule that the library itself never imports torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from s2s_jax.cli import main

REPO = Path(__file__).resolve().parents[2]
BLOCK_TORCH = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torch_ref", "export", "onnx", "onnxruntime"):
            raise ImportError("import of " + name + " is blocked")
sys.meta_path.insert(0, _Block())
"""


def test_parity_verb_prints_errors_within_tolerance(capsys):
    assert main(["parity", "--preset", "d2l-seq2seq", "--set", "hid_dim=12", "--set", "emb_dim=10"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["preset"] == "d2l-seq2seq"
    assert 0 <= report["logits_max_abs"] <= 1e-5 and 0 <= report["grad_max_rel"] <= 1e-4
    assert report["step_vs_full_max_abs"] <= 1e-5 and report["padding_max_abs"] <= 1e-5


def test_parity_verb_unknown_key_is_exit_2(capsys):
    assert main(["parity", "--preset", "d2l-seq2seq", "--set", "hidden=3"]) == 2
    assert "unknown model config key" in capsys.readouterr().err


class _Bar:
    """Stands in for the progress bar (shown only on a terminal) to record what export tells it."""

    def __init__(self, total, desc, unit, **kw):
        self.total, self.stages, self.done = total, [], 0

    def __enter__(self):
        _Bar.last = self
        return self

    def __exit__(self, *exc):
        return False

    def set_description(self, text):
        self.stages.append(text.removeprefix("export: "))

    def update(self, n):
        self.done += n


def test_export_verb_matches_translate(tmp_path, capfd, monkeypatch):
    from export.onnx_export import STAGES
    from s2s_jax.training import logs

    run, out = tmp_path / "run", tmp_path / "onnx"
    assert main(["train", "--preset", "addition-gru", "--workdir", str(run), "--steps", "30", "--batch-size", "16",
                 "--eval-every", "30", "--set", "emb_dim=8", "--set", "hid_dim=8"]) == 0
    capfd.readouterr()
    monkeypatch.setattr(logs, "progress_bar", _Bar)
    assert main(["export", "--workdir", str(run), "--out", str(out)]) == 0
    assert _Bar.last.stages == list(STAGES[:-1]) and _Bar.last.done == _Bar.last.total  # every stage, in order
    assert {"encoder.onnx", "decoder_step.onnx", "model.json"} <= {p.name for p in out.iterdir()}
    err = capfd.readouterr().err  # file-descriptor level: torch's own log handlers write there
    assert "torchvision" not in err and "Warning" not in err and "read only" not in err, err
    inputs = ["12+35", "7+8", "99+1"]
    assert main(["translate", "--workdir", str(run), *inputs]) == 0
    expected = capfd.readouterr().out.split()
    from export.runtime import Translator

    assert Translator.load(out).translate(inputs) == expected


def test_export_verb_missing_workdir_is_exit_2(tmp_path, capsys):
    assert main(["export", "--workdir", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "nope" in err


@pytest.mark.parametrize("argv", [["presets"], ["train", "--help"]])
def test_library_never_imports_torch(tmp_path, argv):
    """Import every s2s_jax module with torch blocked, then run a CLI verb that needs no torch."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_TORCH, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    code = (
        "import importlib, pkgutil, s2s_jax\n"
        "for m in pkgutil.walk_packages(s2s_jax.__path__, 's2s_jax.'):\n"
        "    if not m.name.endswith('.__main__'):  # running it is what importing it means\n"
        "        importlib.import_module(m.name)\n"
        "import torch\n"
    )
    probe = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert "import of torch is blocked" in probe.stderr, probe.stderr[-2000:]  # all s2s_jax imported first
    result = subprocess.run([sys.executable, "-m", "s2s_jax.cli", *argv], cwd=REPO, env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_n_best_with_scores_the_same_in_jax_and_the_runtime(tmp_path, capsys):
    """`--n-best 3 --format jsonl`: the same hypotheses and scores from `s2s-jax translate` and the ONNX runtime,
    and the same at batch 1 as in one batch of 17 inputs of mixed lengths."""
    from export.runtime_cli import main as runtime

    run, out = tmp_path / "run", tmp_path / "onnx"
    assert main(["train", "--preset", "addition-attn", "--workdir", str(run), "--steps", "40", "--batch-size", "16",
                 "--eval-every", "0", "--set", "emb_dim=8", "--set", "hid_dim=8", "--no-progress"]) == 0
    assert main(["export", "--workdir", str(run), "--out", str(out)]) == 0
    capsys.readouterr()
    inputs = [f"{a}+{b}" for a, b in zip(range(0, 99, 6), range(99, 0, -6), strict=False)][:17]
    flags = ["--beam", "3", "--n-best", "3", "--format", "jsonl", "--alpha", "0.6"]
    got = {}
    for name, argv in (("jax", ["translate", "--workdir", str(run), *flags, *inputs]),
                       ("jax_b1", ["translate", "--workdir", str(run), *flags, "--batch-size", "1", *inputs])):
        assert main(argv) == 0
        got[name] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert runtime([str(out), *flags, *inputs]) == 0
    got["ort"] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in got["jax"]] == inputs and all(len(r["hypotheses"]) == 3 for r in got["jax"])
    for other in ("jax_b1", "ort"):
        for a, b in zip(got["jax"], got[other], strict=True):
            assert [h["text"] for h in a["hypotheses"]] == [h["text"] for h in b["hypotheses"]], other
            for ha, hb in zip(a["hypotheses"], b["hypotheses"], strict=True):
                assert abs(ha["score"] - hb["score"]) <= 1e-4, (other, ha, hb)
    scores = [h["score"] for r in got["jax"] for h in r["hypotheses"]]
    assert all(s <= 0 for s in scores) and all(
        r["hypotheses"][0]["score"] >= r["hypotheses"][-1]["score"] for r in got["jax"])  # best first
    assert main(["translate", "--workdir", str(run), "--n-best", "2", "1+2"]) == 2  # n-best needs a beam
    assert "--n-best 2 must be between 1 and the beam (1" in capsys.readouterr().err
