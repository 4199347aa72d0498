"""Hugging Face MarianMTModel (OPUS-MT layout) imported with `s2s-jax import hf-marian`, against transformers itself.

One small model is built locally (tests/importers/marian_fixture.py), saved with `save_pretrained` and imported
into a workdir once per module; the tests then hold the import to the reference:
- the torch mirror loads model.safetensors with strict=True and has exactly its keys and shapes;
- logits within 1e-5 of MarianMTModel's on the same padded ids (Flax, and the torch mirror);
- on 50 sentences: the same source ids as MarianTokenizer, the same greedy tokens as `generate`, the same beam-5
  tokens, and the same text out of `s2s-jax translate` as `tokenizer.batch_decode(generate(...))`;
- the ONNX export of the workdir translates the 50 sentences to the same text with onnxruntime alone.

Matched generation settings. Greedy: `generate(num_beams=1, do_sample=False, max_new_tokens=30)` with the
model's own `forced_eos_token_id` (eos is the 30th token if none came before) == `s2s-jax translate` with rows
bounded at 30 tokens (`data.len_a=0, data.len_b=30`; eos forced on a row's last step). Beam:
`generate(num_beams=5, length_penalty=0.0, early_stopping=False, no_repeat_ngram_size=0)` == `--beam 5 --alpha 0`
(`search(beam=5, alpha=0.0)`; the export test runs it through `translate` of the ONNX runtime):
both rank by the sum of log-probs, keep the best 5 finished among the top 2K candidates of each step, and stop
when no live beam can beat the worst finished one (with length_penalty 0 transformers' early_stopping=False
bound is that exact one). Two conventions differ, so the test asserts they do not come into play: transformers
divides scores by length ** length_penalty (its default 1.0 is not the GNMT penalty ((5 + len) / 6) ** alpha
s2s-jax uses: only length_penalty = alpha = 0 mean the same), and at the length bound transformers' forced eos
scores log-prob 0 where s2s-jax (as fairseq) scores the model's log p(eos): every beam output here ends before it.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import torch_ref
from s2s_jax.cli import main
from s2s_jax.cli.importing import import_model
from s2s_jax.decoding.search import decode_source
from s2s_jax.importers.hf_marian import expected_shapes, read_marian
from s2s_jax.models import build_model
from s2s_jax.run.config import DecodeOptions
from s2s_jax.run.translate import Translator
from s2s_jax.run.workdir import load_run
from tests.importers.marian_fixture import build, sample_inputs

BOUND = 30  # generated tokens, eos included
GREEDY = DecodeOptions()


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    from transformers import MarianMTModel, MarianTokenizer

    root = tmp_path_factory.mktemp("marian")
    hf_dir = build(root / "hf")
    workdir = import_model("hf-marian", hf_dir, root / "run", sets=["data.len_a=0", f"data.len_b={BOUND}"])
    run = load_run(workdir)
    hf = MarianMTModel.from_pretrained(hf_dir).eval()
    tok = MarianTokenizer.from_pretrained(hf_dir)
    texts = sample_inputs()
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        greedy = hf.generate(**enc, num_beams=1, do_sample=False, max_new_tokens=BOUND)
        beam = hf.generate(**enc, num_beams=5, do_sample=False, max_new_tokens=BOUND, length_penalty=0.0,
                           early_stopping=False, no_repeat_ngram_size=0)
    return SimpleNamespace(root=root, hf_dir=hf_dir, workdir=workdir, run=run, hf=hf, tok=tok, texts=texts, enc=enc,
                           outputs={"greedy": greedy, "beam": beam},
                           hf_text={k: tok.batch_decode(v, skip_special_tokens=True) for k, v in
                                    {"greedy": greedy, "beam": beam}.items()},
                           translator=Translator(run.config.model, run.params, run.task, batch_size=64))


def generated(row: torch.Tensor, eos: int) -> list[int]:
    """transformers' output row without its decoder start token, through eos (pad after it dropped)."""
    ids = row[1:].tolist()
    return ids[: ids.index(eos) + 1] if eos in ids else ids


def test_mirror_has_huggingface_state_dict(marian):
    from safetensors.torch import load_file

    cfg = marian.run.config.model
    saved = load_file(str(marian.hf_dir / "model.safetensors"))
    mirror = torch_ref.build_model(cfg)
    mirror.load_state_dict(saved, strict=True)
    assert {k: tuple(v.shape) for k, v in mirror.state_dict().items()} == expected_shapes(cfg)
    assert (cfg.pad_id, cfg.bos_id, cfg.eos_id) == (marian.hf.config.pad_token_id,
                                                      marian.hf.config.decoder_start_token_id, 0)


def _logits_error(cfg, params, hf, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    lengths = np.array([9, 1, 5, 7])
    src = rng.integers(1, cfg.src_vocab_size - 1, (4, 9))
    src[np.arange(9)[None, :] >= lengths[:, None]] = cfg.pad_id
    tgt = rng.integers(0, cfg.tgt_vocab_size, (4, 6))
    tgt[:, 0] = cfg.bos_id
    with torch.no_grad():
        expected = hf(input_ids=torch.from_numpy(src), attention_mask=torch.from_numpy(src != cfg.pad_id).long(),
                      decoder_input_ids=torch.from_numpy(tgt)).logits.numpy()
    model = build_model(cfg)
    logits = np.asarray(jax.jit(model.apply)({"params": params}, src.astype(np.int32), lengths.astype(np.int32),
                                             tgt.astype(np.int32)))
    return float(np.abs(logits - expected).max()), float(np.abs(expected).max())


def test_logits_match_huggingface(marian):
    err, scale = _logits_error(marian.run.config.model, marian.run.params, marian.hf, seed=0)
    print(f"max |logit - MarianMTModel| {err:.2e} (logits up to {scale:.1f})")
    assert scale > 1.0 and err <= 1e-5


def test_separate_untied_tables_match_huggingface(tmp_path):
    """share_encoder_decoder_embeddings=False, tie_word_embeddings=False: separate tables and an lm_head."""
    from transformers import MarianMTModel

    hf_dir = build(tmp_path / "hf", share=False, tie_word_embeddings=False, steps=0)
    imported = read_marian(hf_dir)
    assert {"model.encoder.embed_tokens.weight", "lm_head.weight"} <= set(imported.state_dict)
    from s2s_jax.cli.importing import to_flax

    err, _ = _logits_error(imported.cfg, to_flax(imported), MarianMTModel.from_pretrained(hf_dir).eval(), seed=1)
    assert err <= 1e-5


def test_source_ids_match_tokenizer(marian):
    src, lengths = marian.run.task.encode_inputs(marian.texts)
    mask = marian.enc["attention_mask"].bool()
    for i in range(len(marian.texts)):
        assert src[i, : lengths[i]].tolist() == marian.enc["input_ids"][i][mask[i]].tolist(), marian.texts[i]


def _our_ids(marian, method: str) -> list[list[int]]:
    """Greedy through the Translator (as `translate` decodes); beam 5 through the same search keeping its whole
    batch (`shrink_rows=0`: one compiled loop instead of the Translator's three; results identical, held by
    tests/decoding), every row bounded at BOUND tokens as the Translator bounds them here."""
    src, lengths = marian.run.task.encode_inputs(marian.texts)
    if method == "greedy":
        ids, _ = marian.translator.decode_ids(src, lengths, GREEDY)
        return [row.tolist() for row in ids]
    cfg = marian.run.config.model
    search = jax.jit(lambda p, s, n: decode_source(build_model(cfg), p, s, n, max_len=BOUND, beam=5, alpha=0.0,
                                                   row_max_len=jnp.full(s.shape[:1], BOUND), shrink_rows=0))
    r = search(marian.run.params, src, lengths)
    return [np.asarray(r.tokens[i, 0, : r.lengths[i, 0]]).tolist() for i in range(len(src))]


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_tokens_and_text_match_generate(marian, method):
    ours = _our_ids(marian, method)
    eos = marian.run.config.model.eos_id
    theirs = [generated(row, eos) for row in marian.outputs[method]]
    assert ours == theirs
    assert len({len(row) for row in theirs}) > 5, "outputs should end at varied lengths"
    if method == "beam":
        assert max(len(row) for row in theirs) < BOUND, "beam outputs must end before the bound (see docstring)"
    assert [marian.run.task.decode_output(row) for row in ours] == marian.hf_text[method]


def test_translate_verb_text_matches_generate(marian, tmp_path, capsys):
    """All 50 at once, as one chunk: the verb reuses the greedy function the Translator above compiled."""
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("".join(t + "\n" for t in marian.texts), encoding="utf-8")
    assert main(["translate", "--workdir", str(marian.workdir), "--input", str(inputs)]) == 0
    assert capsys.readouterr().out.splitlines() == marian.hf_text["greedy"]


def test_export_runtime_text_matches_generate(marian):
    from export.onnx_export import export_workdir
    from export.runtime import Translator as OrtTranslator

    out = marian.root / "onnx"
    export_workdir(marian.workdir, out)
    ort = OrtTranslator.load(out)
    assert ort.translate(marian.texts, batch_size=64) == marian.hf_text["greedy"]
    assert ort.translate(marian.texts, beam=5, alpha=0.0, batch_size=64) == marian.hf_text["beam"]


def test_decode_matches_tokenizer_decode(marian):
    """Random output ids (unk and pad among them, eos last) -> text as `tok.decode(skip_special_tokens=True)`."""
    cfg, task = marian.run.config.model, marian.run.task
    rng = np.random.default_rng(5)
    for n in range(40):
        row = [int(x) for x in rng.integers(1, cfg.tgt_vocab_size, rng.integers(1, 12))]
        row[rng.integers(0, len(row))] = 1 if n % 2 else cfg.pad_id  # unk, or pad mid-sentence
        row.append(cfg.eos_id)
        assert task.decode_output(row) == marian.tok.decode(row, skip_special_tokens=True), row


def _broken(marian, tmp_path, edit) -> int:
    from safetensors.numpy import load_file, save_file

    bad = tmp_path / "bad"
    shutil.copytree(marian.hf_dir, bad)
    state = load_file(str(bad / "model.safetensors"))
    config = json.loads((bad / "config.json").read_text())
    edit(state, config)
    save_file(state, str(bad / "model.safetensors"))
    (bad / "config.json").write_text(json.dumps(config))
    return main(["import", "hf-marian", str(bad), "--workdir", str(tmp_path / "w")])


@pytest.mark.parametrize("edit, message", [
    (lambda s, c: s.pop("model.decoder.layers.1.encoder_attn.k_proj.bias"),
     "missing key 'model.decoder.layers.1.encoder_attn.k_proj.bias'"),
    (lambda s, c: s.update({"model.encoder.layernorm_embedding.weight": np.ones(16, np.float32)}),
     "unexpected key 'model.encoder.layernorm_embedding.weight'"),
    (lambda s, c: s.update({"model.encoder.layers.0.fc1.weight": np.ones((16, 16), np.float32)}),
     r"key 'model.encoder.layers.0.fc1.weight' has shape \(16, 16\), the config says \(32, 16\)"),
    (lambda s, c: c.update(model_type="bart", architectures=["BartForConditionalGeneration"]),
     "model_type 'bart' is not 'marian'"),
    (lambda s, c: c.update(decoder_layers=1), "encoder_layers=2 differs from decoder_layers=1"),
    (lambda s, c: s.update({"lm_head.weight": np.zeros_like(s["model.shared.weight"])}),
     "'lm_head.weight' should be tied to 'model.shared.weight'"),
])
def test_bad_checkpoint_is_one_line_exit_2(marian, tmp_path, capsys, edit, message):
    import re

    assert _broken(marian, tmp_path, edit) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("s2s-jax import: error:") and re.search(message, err), err
    assert not (tmp_path / "w").exists()
