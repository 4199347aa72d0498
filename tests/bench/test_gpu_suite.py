"""bench/gpu_suite.py keeps working: its tiny CPU mode (what it falls back to without a GPU) runs one family end to
end (parity, fp32 and bf16 training of JAX and torch eager, beam decoding of both) and prints its table. The
suite covers every family on a GPU; one here keeps the test to seconds (torch.compile is skipped: inductor's C++
compile alone would take a minute on CPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def gpu_suite():
    spec = importlib.util.spec_from_file_location("gpu_suite", BENCH / "gpu_suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_family_is_in_the_default_run(gpu_suite):
    args = gpu_suite.parse_args([])
    assert args.presets.split(",") == ["bentrevett-lstm", "bentrevett-gru", "bentrevett-attention",
                                       "bentrevett-convs2s", "bentrevett-transformer"]
    assert args.tiny  # no GPU here: tiny sizes chosen by themselves
    assert gpu_suite.parse_args(["--tiny", "--steps", "7"]).steps == 7


def test_tiny_run_prints_the_table(gpu_suite, capsys):
    assert gpu_suite.main(["--tiny", "--presets", "bentrevett-gru", "--no-compile"]) == 0
    out = capsys.readouterr().out
    rows = {line.split(" | ")[1]: line.split(" | ") for line in out.splitlines() if line.startswith("| bentrevett")}
    assert set(rows) == {"fp32", "bf16"}, out
    fp32 = rows["fp32"]
    assert float(fp32[2]) <= 1e-5  # parity, highest precision
    assert all(float(fp32[i].replace(",", "")) > 0 for i in (3, 4, 11, 12))  # train and decode tokens/s
    assert fp32[6].endswith("x") and fp32[5] == "skipped (--no-compile)"
    assert fp32[14].strip(" |") == "100%"  # JAX and torch_ref decode the same tokens
