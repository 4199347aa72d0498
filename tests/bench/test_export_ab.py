"""bench/export_ab.py: two exports decode the same sources in turns; identical exports give identical tokens."""

import shutil
import sys
from pathlib import Path

from export.onnx_export import export_model
from s2s_jax import presets
from s2s_jax.checks import init_params, random_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import export_ab  # noqa: E402


def test_two_copies_of_one_export_agree(tmp_path, capsys):
    cfg = presets.get("bentrevett-transformer", src_vocab_size=23, tgt_vocab_size=29, emb_dim=16, hid_dim=16,
                      ff_dim=32, n_layers=1, n_heads=2, max_len=32)
    export_model(cfg, init_params(cfg, random_batch(cfg, seed=1)), tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert export_ab.main([str(tmp_path / "a"), str(tmp_path / "b"), "--batch", "3", "--beam", "2",
                           "--sentences", "3", "--forced", "5"]) == 0
    out = capsys.readouterr().out
    assert out.count("target tokens/s") == 2
    assert "same tokens: True (batch 3, beam 2, 3 batches, 5 tokens forced)" in out
