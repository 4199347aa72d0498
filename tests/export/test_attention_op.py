"""export/attention_op.py: the Transformers' step attention as onnxruntime's fused op, writing the cache in place;
heads the op refuses export the step's rows instead. (tests/contract/test_export.py holds the fused exports of
every Transformer preset to JAX: log-probs, buffer growth and reorder, greedy and beam tokens at batch 1 and 3.)"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from export import attention_op
from export.onnx_export import DECODER_FILE, export_model
from export.quantize import quantize_export
from export.runtime import Translator
from s2s_jax import presets
from s2s_jax.checks import init_params, random_batch
from tests.helpers import random_src
from tests.jax_reference import jax_fns

MAX_LEN = 12


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    """The Transformer export with heads of 8 dimensions, shared by the tests that only read it (and add int8)."""
    return exported(tmp_path_factory.mktemp("fused"), "bentrevett-transformer", n_heads=2)


def exported(tmp_path, name: str, n_heads: int):
    cfg = presets.get(name, src_vocab_size=23, tgt_vocab_size=29, emb_dim=16, hid_dim=16, ff_dim=32, n_layers=2,
                      n_heads=n_heads, max_len=64)
    params = init_params(cfg, random_batch(cfg, seed=1))
    manifest = export_model(cfg, params, tmp_path / f"{name}-{n_heads}")
    return cfg, params, manifest, tmp_path / f"{name}-{n_heads}"


def fused_nodes(out) -> list[onnx.NodeProto]:
    graph = onnx.load(str(out / DECODER_FILE)).graph
    return [n for n in graph.node if n.op_type == attention_op.NODE and n.domain == attention_op.DOMAIN]


def same_tokens_as_jax(cfg, params, out, int8: bool = False) -> None:
    src, lengths = random_src(cfg, 5, 11, seed=4)
    lengths[:3] = (11, 1, 7)
    translator = Translator.load(out, int8=int8)
    fns = jax_fns(cfg, MAX_LEN)
    for beam, jax_result in ((1, fns[2](params, src, lengths)), (4, fns[3](params, src, lengths, 4, 0.6))):
        for rows in (slice(0, 5), slice(0, 1), slice(1, 4)):  # batch 5, 1 and 3
            ort_result = translator.search(src[rows], lengths[rows], beam=beam, max_len=MAX_LEN,
                                           alpha=0.0 if beam == 1 else 0.6)
            np.testing.assert_array_equal(np.asarray(ort_result.tokens), np.asarray(jax_result.tokens)[rows])


@pytest.mark.parametrize("name", ["bentrevett-transformer", "marian"])
def test_heads_of_8_dims_write_the_cache_in_the_fused_op(tmp_path, fused, name):
    cfg, params, manifest, out = fused if name == "bentrevett-transformer" else exported(tmp_path, name, n_heads=2)
    cache = manifest["cache"]
    assert "rows" not in cache and set(cache["present"]) == set(manifest["state_tensors"])
    nodes = fused_nodes(out)
    assert len(nodes) == cfg.n_layers  # one a decoder layer, each writing its own two buffers
    for node in nodes:
        assert list(node.output[1:]) == [attention_op.PRESENT + node.input[3], attention_op.PRESENT + node.input[4]]
    assert manifest["check"]["max_abs_logprob_error"] <= 1e-4
    same_tokens_as_jax(cfg, params, out)


def test_the_fused_export_quantizes_and_decodes(fused):
    cfg, _, _, out = fused
    record = quantize_export(out)
    assert record["quantized_ops"].get("MatMulInteger", 0) > 0
    src, lengths = random_src(cfg, 3, 9, seed=5)
    result = Translator.load(out, int8=True).search(src, lengths, beam=3, max_len=MAX_LEN, alpha=0.6)
    assert np.asarray(result.tokens).shape[:2] == (3, 3)


def test_heads_the_kernel_refuses_export_rows_for_the_runtime_to_write(tmp_path):
    """onnxruntime's CPU kernel refuses heads of 4 dimensions at run time: such a model exports export version 3's
    step (the new position's rows, written by the runtime), decoding the same tokens as JAX."""
    cfg, params, manifest, out = exported(tmp_path, "bentrevett-transformer", n_heads=4)
    assert manifest["cache"]["rows"] and "present" not in manifest["cache"] and not fused_nodes(out)
    same_tokens_as_jax(cfg, params, out)


def test_a_buffer_no_fused_node_writes_is_an_error(fused):
    _, _, manifest, out = fused
    buffers = manifest["state_tensors"]
    proto = onnx.load(str(out / DECODER_FILE))
    fused = [n for n in proto.graph.node if n.op_type == attention_op.NODE]
    fused[1].input[3] = fused[0].input[3]  # two nodes writing one buffer
    with pytest.raises(ValueError, match="reads past 'state.keys.0', not one buffer of its own"):
        attention_op.expose_presents(proto, buffers)
    proto = onnx.load(str(out / DECODER_FILE))
    proto.graph.node.remove([n for n in proto.graph.node if n.op_type == attention_op.NODE][1])
    with pytest.raises(ValueError, match=r"no GroupQueryAttention node writes the cache buffers \['state.keys.1'"):
        attention_op.expose_presents(proto, buffers)


def test_the_step_binding_is_kept_until_the_buffers_or_the_heads_change(fused, monkeypatch):
    """export/ort_step.py's KeptBinding: a greedy search of 12 forced steps (no eos within reach) binds the step
    once, then again when the buffers grow past CHUNK (8) positions; the first beam step's log-prob head and
    every reordered cache bind anew; a new search starts unbound. Tokens: same_tokens_as_jax above."""
    from export import ort_step
    from export.cache import CHUNK
    from export.search import search_top

    made = []
    original = ort_step.KeptBinding.__init__
    monkeypatch.setattr(ort_step.KeptBinding, "__init__", lambda self, *a: made.append(a[3]) or original(self, *a))
    cfg, _, _, out = fused
    stepper = Translator.load(out).stepper
    src, lengths = random_src(cfg, 2, 9, seed=6)
    for beam in (1, 3):
        made.clear()
        enc, state = stepper.encode(src, lengths)
        assert stepper._kept is None
        search_top(stepper.top_step, enc, state, batch=2, beam=beam, max_len=MAX_LEN, bos_id=cfg.bos_id,
                   eos_id=cfg.tgt_vocab_size, pad_id=cfg.pad_id, reorder=stepper.reorder, take=stepper.take,
                   shared_encoder=stepper.shared_encoder)
        if beam == 1:
            assert MAX_LEN > CHUNK and made == [["top_values", "top_indices", "eos_values"]] * 2
        else:  # the first step's log-probs, then one binding per step, as the reorder makes new buffers
            assert made[0] == ["log_probs"] and len(made) == MAX_LEN
