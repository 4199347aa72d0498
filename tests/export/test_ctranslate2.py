"""The CTranslate2 export (export/ctranslate2_export.py) decodes as JAX does.

Both Transformer layouts (post-LN learned positions `bentrevett-transformer`, pre-LN sinusoidal `transformer`),
untrained at small sizes, on a word-level toy language: `s2s-jax export --format ctranslate2` (the CLI hook),
then CTranslate2 greedy search through the export's own front end must give JAX's greedy ids on all 100
sentences of test_export_text (unknown words, capitals, lengths 1 to 20, so some rows reach their length
bound). `--quantize int8` stores int8 weights; other families are refused with a clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optax
import pytest
import torch

import torch_ref

pytest.importorskip("ctranslate2")

from export.ctranslate2_runtime import CT2Translator  # noqa: E402
from s2s_jax.cli import main as cli_main  # noqa: E402
from s2s_jax.data.translation import TranslationTask  # noqa: E402
from s2s_jax.models import build_model  # noqa: E402
from s2s_jax.run.config import DataConfig, DecodeOptions, RunConfig  # noqa: E402
from s2s_jax.run.train import config_for_task  # noqa: E402
from s2s_jax.run.translate import Translator as JaxTranslator  # noqa: E402
from s2s_jax.run.workdir import load_run, save_run  # noqa: E402
from s2s_jax.training.state import create_train_state  # noqa: E402
from tests.export.test_export_text import sentences_100, text_workdir, toy_corpus  # noqa: E402

SIZES = dict(hid_dim=16, n_heads=2, ff_dim=32, n_layers=2, dropout=0.0)


def transformer_workdir(path: Path, preset: str) -> Path:
    src, tgt = toy_corpus(200, 1)
    task = TranslationTask("parallel_text:unused.src,unused.tgt", buckets=(8, 16), tokenizer="word", lowercase=True)
    task.fit(src, tgt)
    cfg = config_for_task(preset, task, SIZES)
    state = create_train_state(build_model(cfg), cfg, optax.adam(1e-3), 0, task.shape_batch())
    save_run(path, RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=preset), task, state)
    return path


@pytest.mark.parametrize("preset", ["bentrevett-transformer", "transformer"])
def test_ctranslate2_greedy_ids_are_jax_ids(tmp_path, preset):
    workdir = transformer_workdir(tmp_path / "run", preset)
    assert cli_main(["export", "--workdir", str(workdir), "--out", str(tmp_path / "ct2"), "--format",
                     "ctranslate2"]) == 0
    run = load_run(workdir)
    texts = sentences_100()
    src, lengths = run.task.encode_inputs(texts)
    jax = JaxTranslator(run.config.model, run.params, run.task, len(texts))  # one chunk: one compilation
    jax_ids, _ = jax.decode_ids(src, lengths, DecodeOptions())
    ct2 = CT2Translator.load(tmp_path / "ct2", compute_type="float32")
    ct2_ids = [hyps[0] for hyps in ct2.decode_ids([ct2.tokens(t) for t in texts])]
    reached = ct2.limits([len(ct2.tokens(t)) for t in texts]) == np.array([len(i) for i in ct2_ids])
    assert reached.any(), "the check needs rows that end at their length bound"
    assert [list(map(int, row)) for row in jax_ids] == ct2_ids
    assert ct2.translate(texts) == jax.translate(texts)


def test_ctranslate2_int8_weights(tmp_path):
    workdir = transformer_workdir(tmp_path / "run", "bentrevett-transformer")
    for kind, extra in (("fp32", []), ("int8", ["--quantize", "int8"])):
        assert cli_main(["export", "--workdir", str(workdir), "--out", str(tmp_path / kind), "--format",
                         "ctranslate2", *extra]) == 0
    fp32, int8 = ((tmp_path / k / "model.bin").stat().st_size for k in ("fp32", "int8"))
    run = load_run(workdir)
    mirror = torch_ref.build_model(run.config.model)
    matrices = sum(m.weight.numel() for m in mirror.modules() if isinstance(m, torch.nn.Linear))
    assert fp32 - int8 >= 2.5 * matrices  # 3 of every 4 bytes of each linear layer's weights saved, scales aside
    texts = sentences_100()[:10]
    assert all(isinstance(t, str) for t in CT2Translator.load(tmp_path / "int8").translate(texts, beam=2))


def test_ctranslate2_refuses_other_families(tmp_path, capsys):
    src, tgt = toy_corpus(50, 0)
    workdir = text_workdir(tmp_path / "run", src, tgt)  # bentrevett-gru
    code = cli_main(["export", "--workdir", str(workdir), "--out", str(tmp_path / "ct2"), "--format", "ctranslate2"])
    assert code == 2
    assert "exports Transformer models; this is a rnn model" in capsys.readouterr().err
    assert not (tmp_path / "ct2").exists()
