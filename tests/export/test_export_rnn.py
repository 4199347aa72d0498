"""ONNX export of the RNN family: onnxruntime agrees with JAX and torch_ref, in log-probs and in decoded tokens.

Each preset (tiny sizes, the addition task's 14-symbol vocab so the text path
works too) is exported once per session. Random weights are scaled up and the
eos bias shifted so greedy outputs differ between inputs and end at varied
lengths; a model that always emits the same token would make token identity
an empty check.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import torch_ref
from export import graphs, rnn_op, search
from export.onnx_export import export_model
from export.runtime import TranslationError, Translator
from s2s_jax import presets
from s2s_jax.checks import init_params, random_batch
from s2s_jax.config import ModelConfig
from s2s_jax.data.addition import AdditionTask
from s2s_jax.decoding.search import decode_source
from s2s_jax.models import build_model
from tests.helpers import random_src
from tests.jax_reference import jax_fns as reference_fns
from torch_ref.convert import flax_to_torch
from torch_ref.layers import make_rnn, run_rnn

PRESETS = ["bentrevett-lstm", "bentrevett-gru", "d2l-seq2seq", "addition-gru"]
TASK = AdditionTask(digits=2)
TEXTS = ["12+35", "7+8", "99+99", "0+0", "50+1", "3+44", "61+27", "5+90"]
# 200 problems for token identity across JAX, torch_ref and ORT (the export acceptance).
PROBLEMS = TEXTS + [f"{a}+{b}" for a, b in np.random.default_rng(200).integers(0, 100, (192, 2))]
MAX_LEN = 8
BEAM = 5
ATOL = 1e-4


class Exported(NamedTuple):
    cfg: ModelConfig
    params: Any
    model: Any
    tmodel: torch.nn.Module
    out: Any
    manifest: dict[str, Any]
    translator: Translator


def varied_params(cfg: ModelConfig, src: np.ndarray, lengths: np.ndarray) -> Any:
    """Random params scaled x2.5, eos bias raised so eos wins at ~15% of the greedy path's steps."""
    model = build_model(cfg)
    params = jax.tree.map(lambda x: x * 2.5, init_params(cfg, random_batch(cfg, batch=2, src_len=5, tgt_len=3)))
    tokens = decode_source(model, params, src, lengths, max_len=MAX_LEN).tokens[:, 0]
    tgt_in = jnp.concatenate([jnp.full((len(src), 1), cfg.bos_id), tokens[:, :-1]], axis=1)
    logits = model.apply({"params": params}, src, lengths, tgt_in)
    margin = jnp.max(logits.at[..., cfg.eos_id].set(-jnp.inf), axis=-1) - logits[..., cfg.eos_id]
    params["out"]["bias"] = params["out"]["bias"].at[cfg.eos_id].add(float(jnp.quantile(margin, 0.15)))
    return params


@pytest.fixture(scope="module", params=PRESETS)
def exported(request, tmp_path_factory) -> Exported:
    vocab = TASK.tgt_vocab
    overrides = dict(emb_dim=8, hid_dim=12, src_vocab_size=len(vocab), tgt_vocab_size=len(vocab),
                     pad_id=vocab.pad_id, bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    if request.param == "bentrevett-lstm":
        overrides["reverse_source"] = True  # Sutskever et al.'s reversal, so its export path is covered
    cfg = presets.get(request.param, **overrides)
    src, lengths = TASK.encode_inputs(TEXTS)
    params = varied_params(cfg, src, lengths)
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    tmodel.eval()
    out = tmp_path_factory.mktemp(request.param)
    manifest = export_model(cfg, params, out, task=TASK, preset=request.param, quantize="int8")
    return Exported(cfg, params, build_model(cfg), tmodel, out, manifest, Translator.load(out))


def jax_fns(cfg: ModelConfig):
    return reference_fns(cfg, MAX_LEN)


def test_graphs_pass_full_check_and_are_lengths_aware(exported):
    recurrent = {"LSTM", "GRU", "RNN"}
    for key in ("encoder", "decoder_step"):
        path = exported.out / exported.manifest[key]["file"]
        onnx.checker.check_model(str(path), full_check=True)
        nodes = [n for n in onnx.load(str(path)).graph.node if n.op_type in recurrent]
        assert len(nodes) == exported.cfg.n_layers
        for node in nodes:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "GRU":
                assert attrs["linear_before_reset"] == int(exported.cfg.reset_after)
            if key == "encoder":  # the source recurrence stops at each row's length
                assert len(node.input) > 4 and node.input[4] != ""
    assert exported.manifest["check"]["max_abs_logprob_error"] <= ATOL


def test_manifest_is_self_describing(exported):
    m = exported.manifest
    assert ModelConfig.from_dict(m["config"]) == exported.cfg
    assert m["vocab"]["tgt"] == TASK.tgt_vocab.to_dict() and m["tokenizer"]["type"] == "addition"
    assert m["special_ids"] == {"pad": 11, "bos": 12, "eos": 13}
    assert m["decoder_step"]["inputs"] == ["token", *m["enc_tensors"], *m["state_tensors"], "live", "k"]
    assert m["state_reorder"]["inputs"] == ["rows", *m["state_tensors"]]
    assert m["encoder"]["outputs"] == [*m["enc_tensors"], *m["state_tensors"]]
    sessions = {k: ort.InferenceSession(str(exported.out / m[k]["file"])) for k in ("encoder", "decoder_step")}
    assert [i.name for i in sessions["decoder_step"].get_inputs()] == m["decoder_step"]["inputs"]
    assert [o.name for o in sessions["encoder"].get_outputs()] == m["encoder"]["outputs"]
    # The rnn family's step reads only the context (cho, d2l) or nothing (none) from the encoder.
    assert m["enc_tensors"] == ([] if exported.cfg.context == "none" else ["enc.context"])


@pytest.mark.parametrize("batch", [1, 3])
def test_step_log_probs_match_jax(exported, batch):
    """Encoder + 4 decoder steps at source lengths 1, 7 and 50 (export sample: batch 2, length 5)."""
    encode, step, _, _ = jax_fns(exported.cfg)
    worst = 0.0
    for length in (1, 7, 50):
        src, lengths = random_src(exported.cfg, batch, length, seed=length + batch)
        enc_j, state_j = encode(exported.params, src, lengths)
        enc_o, state_o = exported.translator.encode(src, lengths)
        tokens = np.random.default_rng(length).integers(0, exported.cfg.tgt_vocab_size, (4, batch))
        tokens[0] = exported.cfg.bos_id
        for token in tokens:
            logp_j, state_j = step(exported.params, enc_j, token.astype(np.int32), state_j)
            logp_o, state_o = exported.translator.step(enc_o, token, state_o)
            assert logp_o.shape == (batch, exported.cfg.tgt_vocab_size)
            worst = max(worst, float(np.abs(logp_o - np.asarray(logp_j)).max()))
    print(f"{exported.cfg.origin} batch {batch}: max |ORT - JAX| log-prob {worst:.2e}")
    assert worst <= ATOL


def torch_search(tmodel, src, lengths, **kwargs):
    """torch_ref through the numpy search (`export.search.search`), the ONNX runtime's own search."""
    step, enc, state = graphs.numpy_stepper(tmodel, torch.from_numpy(src.astype(np.int64)),
                                            torch.from_numpy(lengths.astype(np.int64)), kwargs["max_len"])
    return search.search(step, enc, state, batch=len(src), **kwargs)


def test_greedy_tokens_identical(exported):
    cfg = exported.cfg
    src, lengths = TASK.encode_inputs(PROBLEMS)
    res_j = jax_fns(cfg)[2](exported.params, src, lengths)
    tokens_j, lengths_j, scores_j = (np.asarray(x)[:, 0] for x in res_j[:3])
    assert len(set(lengths_j.tolist())) > 1, "fixture should give varied output lengths"
    ids = dict(max_len=MAX_LEN, bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id)
    res_t = torch_search(exported.tmodel, src, lengths, **ids)
    ort_result = exported.translator.search(src, lengths, max_len=MAX_LEN)
    np.testing.assert_array_equal(res_t.tokens[:, 0], tokens_j)
    np.testing.assert_array_equal(res_t.lengths[:, 0], lengths_j)
    np.testing.assert_array_equal(ort_result.tokens[:, 0], tokens_j)
    np.testing.assert_array_equal(ort_result.lengths[:, 0], lengths_j)
    assert np.all(np.isfinite(scores_j))  # greedy scores are log-probs, the same in all three
    for res in (res_t, ort_result):
        np.testing.assert_allclose(res.scores[:, 0], scores_j, atol=ATOL)
    expected = [TASK.decode_output(row) for row in tokens_j]
    assert exported.translator.translate(PROBLEMS, max_len=MAX_LEN) == expected


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_tokens_identical(exported, alpha):
    cfg = exported.cfg
    src, lengths = TASK.encode_inputs(PROBLEMS)
    res_j = jax_fns(cfg)[3](exported.params, src, lengths, BEAM, alpha)
    tokens_j, lengths_j, scores_j = (np.asarray(x) for x in res_j[:3])
    ids = dict(max_len=MAX_LEN, bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id)
    res_t = torch_search(exported.tmodel, src, lengths, beam=BEAM, alpha=alpha, **ids)
    res_o = exported.translator.search(src, lengths, beam=BEAM, max_len=MAX_LEN, alpha=alpha)
    for res in (res_t, res_o):  # the full n-best, best first
        np.testing.assert_array_equal(res.tokens, tokens_j)
        np.testing.assert_array_equal(res.lengths, lengths_j)
        np.testing.assert_allclose(res.scores, scores_j, atol=ATOL)
    best = exported.translator.translate(PROBLEMS, beam=BEAM, max_len=MAX_LEN, alpha=alpha)
    assert best == [TASK.decode_output(row[0]) for row in tokens_j]
    assert exported.translator.translate(PROBLEMS[:2], beam=BEAM, max_len=MAX_LEN, alpha=alpha, n_best=3) == [
        [TASK.decode_output(row[k]) for k in range(3)] for row in tokens_j[:2]
    ]


def test_int8_export_runs_and_is_smaller(exported):
    q = exported.manifest["int8"]
    assert q["bytes_int8"] < q["bytes_fp32"]
    assert q["quantized_ops"].get("MatMulInteger", 0) >= 1  # the output projection
    if exported.cfg.cell == "lstm":
        assert q["quantized_ops"].get("DynamicQuantizeLSTM", 0) == 2 * exported.cfg.n_layers
    int8 = Translator.load(exported.out, int8=True)
    outputs = int8.translate(TEXTS, beam=3, max_len=MAX_LEN)
    assert len(outputs) == len(TEXTS) and all(isinstance(o, str) for o in outputs)


def test_runtime_rejects_bad_input(exported):
    with pytest.raises(TranslationError, match="not an addition problem"):
        exported.translator.translate(["12-3"])
    with pytest.raises(TranslationError, match="more than 2 digits"):
        exported.translator.translate(["123+4"])
    with pytest.raises(TranslationError, match="model.json is missing"):
        Translator.load(exported.out / "nowhere")


class _Stack(torch.nn.Module):
    def __init__(self, rnn: torch.nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        out, final = run_rnn(self.rnn, x, lengths)
        return (out, *final) if isinstance(final, tuple) else (out, final)


@pytest.mark.parametrize("cell,reset_after", [("gru", True), ("gru", False), ("lstm", True), ("rnn", True)])
def test_onnx_recurrent_layers_match_torch_packed(tmp_path, cell, reset_after):
    """Bidirectional 2-layer stacks: ONNX RNN/GRU/LSTM with sequence_lens == torch's packed sequences,
    at sizes other than the export sample (GRU linear_before_reset, reverse direction from the true end)."""
    torch.manual_seed(0)
    stack = make_rnn(cell, 5, 4, 2, 0.0, True, reset_after).eval()
    swapped = _Stack(rnn_op.OnnxRNN(stack)).eval()
    batch, steps = torch.export.Dim("batch"), torch.export.Dim("steps")
    program = torch.onnx.export(
        swapped, (torch.randn(2, 6, 5), torch.tensor([6, 3])), dynamo=True, verbose=False,
        dynamic_shapes={"x": {0: batch, 1: steps}, "lengths": {0: batch}},
        custom_translation_table=rnn_op.TRANSLATIONS,
    )
    program.save(str(tmp_path / "stack.onnx"), external_data=False)
    sess = ort.InferenceSession(str(tmp_path / "stack.onnx"))
    for lengths in ([1], [9, 1, 4], [3, 3]):
        x = torch.randn(len(lengths), max(lengths), 5)
        lens = torch.tensor(lengths)
        with torch.no_grad():
            expected = _Stack(stack)(x, lens)
        got = sess.run(None, {i.name: v.numpy() for i, v in zip(sess.get_inputs(), (x, lens), strict=True)})
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_allclose(g, e.numpy(), atol=1e-5)
