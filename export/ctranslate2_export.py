"""Export a Transformer to CTranslate2 (`s2s-jax export --format ctranslate2`), through CTranslate2's own spec API.

Why: CTranslate2 is what Transformer translation models are deployed with on CPU; a model trained here should
reach it directly, not through a third tool. The weights take the path of every export (Flax params ->
`torch_ref.convert.flax_to_torch` -> the torch_ref mirror), and `S2SJaxConverter` fills a
`ctranslate2.specs.TransformerSpec` from the mirror's modules, as CTranslate2's own converters (fairseq,
OpenNMT) do from theirs; `Converter.convert` then validates, optionally quantizes (`--quantize int8`) and
writes `model.bin`, `config.json` and the vocabularies.

What maps to what (the bentrevett tutorial's names, s2s_jax/models/transformer.py for the computation):
- post-LN (`bentrevett-transformer`) or pre-LN with final norms (`transformer`): `pre_norm`; each sublayer's norm
  (`self_attn_layer_norm`, `enc_attn_layer_norm`, `ff_layer_norm`) is CTranslate2's norm of that sublayer;
- token embeddings scaled by sqrt(hid_dim), then positions added: `scale_embeddings`; the position table is
  written out: the learned one, or our sinusoidal table for cfg.max_len positions (CTranslate2's own sinusoids
  put all sines before all cosines; ours interleave them), so CTranslate2 decodes at most cfg.max_len positions;
- q, k, v projections fused as CTranslate2 stores them (self-attention q|k|v, encoder attention q and k|v);
  the output layer is `fc_out` or the tied target embedding; layer norm epsilon is the mirror's.
- ids: the vocabularies are the task's, in id order, so CTranslate2's token ids are ours; the decoder starts
  from our bos token, sources get no bos/eos (as the task encodes them).

Beside the model, `s2s_jax.json` keeps what the text front end needs (export/ctranslate2_runtime.py reads it
with export/text.py: tokenizers, the a * length + b bound). ctranslate2 is an optional extra
(`pip install -e '.[ctranslate2]'`); nothing else imports it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

import torch_ref
from s2s_jax.config import ModelConfig
from s2s_jax.errors import UserError
from torch_ref.convert import flax_to_torch

FORMAT = "s2s-jax-ctranslate2"
VERSION = 1
FRONT_END_FILE = "s2s_jax.json"
QUANTIZATIONS = ("int8",)


def _ctranslate2() -> Any:
    try:
        import ctranslate2
    except ImportError:
        raise UserError("--format ctranslate2 needs the ctranslate2 package: pip install -e '.[ctranslate2]'") from None
    return ctranslate2


def check_supported(cfg: ModelConfig) -> None:
    """CTranslate2's TransformerSpec covers the transformer family (both layouts); other families are ONNX-only."""
    if cfg.family != "transformer":
        raise UserError(f"--format ctranslate2 exports Transformer models; this is a {cfg.family} model: "
                        "use the ONNX export (--format onnx)")
    if cfg.hid_dim % cfg.n_heads:
        raise UserError(f"hid_dim={cfg.hid_dim} is not a multiple of n_heads={cfg.n_heads}")


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _linear(spec: Any, module: torch.nn.Linear) -> None:
    spec.weight = _array(module.weight)
    if module.bias is not None:
        spec.bias = _array(module.bias)


def _fused(spec: Any, modules: list[torch.nn.Linear]) -> None:
    spec.weight = np.concatenate([_array(m.weight) for m in modules])
    spec.bias = np.concatenate([_array(m.bias) for m in modules])


def _norm(spec: Any, module: torch.nn.LayerNorm) -> None:
    spec.gamma, spec.beta = _array(module.weight), _array(module.bias)


def _attention(spec: Any, module: torch.nn.Module, self_attention: bool) -> None:
    if self_attention:
        _fused(spec.linear[0], [module.fc_q, module.fc_k, module.fc_v])
    else:
        _linear(spec.linear[0], module.fc_q)
        _fused(spec.linear[1], [module.fc_k, module.fc_v])
    _linear(spec.linear[-1], module.fc_o)


def _positions(cfg: ModelConfig, side: torch.nn.Module) -> np.ndarray:
    from torch_ref.models.transformer import sinusoidal

    if cfg.positions == "learned":
        return _array(side.pos_embedding.weight)
    return _array(sinusoidal(torch.arange(cfg.max_len), cfg.hid_dim))


def _side(spec: Any, cfg: ModelConfig, side: torch.nn.Module, decoder: bool) -> None:
    embeddings = spec.embeddings if decoder else spec.embeddings[0]
    embeddings.weight = _array(side.tok_embedding.weight)
    spec.scale_embeddings = True
    spec.position_encodings.encodings = _positions(cfg, side)
    if cfg.pre_ln:
        _norm(spec.layer_norm, side.layer_norm)
    for layer_spec, layer in zip(spec.layer, side.layers, strict=True):
        _attention(layer_spec.self_attention, layer.self_attention, True)
        _norm(layer_spec.self_attention.layer_norm, layer.self_attn_layer_norm)
        if decoder:
            _attention(layer_spec.attention, layer.encoder_attention, False)
            _norm(layer_spec.attention.layer_norm, layer.enc_attn_layer_norm)
        _linear(layer_spec.ffn.linear_0, layer.positionwise_feedforward.fc_1)
        _linear(layer_spec.ffn.linear_1, layer.positionwise_feedforward.fc_2)
        _norm(layer_spec.ffn.layer_norm, layer.ff_layer_norm)


def build_spec(cfg: ModelConfig, params: Any, vocab: dict[str, Any]) -> Any:
    """A filled `ctranslate2.specs.TransformerSpec` for Flax `params` of `cfg`; `vocab`: model.json's (src, tgt)."""
    check_supported(cfg)
    specs = _ctranslate2().specs
    model = torch_ref.build_model(cfg)
    model.load_state_dict(flax_to_torch(cfg, params), strict=True)
    model.eval()
    spec = specs.TransformerSpec.from_config(cfg.n_layers, cfg.n_heads, pre_norm=cfg.pre_ln,
                                             activation=specs.Activation.RELU)
    _side(spec.encoder, cfg, model.encoder, decoder=False)
    _side(spec.decoder, cfg, model.decoder, decoder=True)
    if cfg.tie_embeddings:
        spec.decoder.projection.weight = _array(model.decoder.tok_embedding.weight)
    else:
        _linear(spec.decoder.projection, model.decoder.fc_out)
    spec.config.layer_norm_epsilon = float(model.decoder.layers[0].ff_layer_norm.eps)
    src, tgt = vocab["src"], vocab["tgt"]
    spec.register_source_vocabulary(list(src["tokens"]))
    spec.register_target_vocabulary(list(tgt["tokens"]))
    specials = tgt["specials"]
    spec.config.bos_token = spec.config.decoder_start_token = specials["bos"]
    spec.config.eos_token = specials["eos"]
    spec.config.unk_token = src["specials"].get("unk") or specials.get("unk") or spec.config.unk_token
    spec.config.add_source_bos = spec.config.add_source_eos = False
    return spec


def export_ctranslate2(cfg: ModelConfig, params: Any, out: str | Path, *, task: Any, preset: str | None = None,
                       quantize: str | None = None) -> dict[str, Any]:
    """Write a CTranslate2 model of `params` into `out` (replacing an earlier CTranslate2 export there), with the
    front end `task` gives (vocab, tokenizers, length bound); return the front-end record (s2s_jax.json)."""
    from export.onnx_export import tokenizer_spec

    check_supported(cfg)
    if quantize not in (None, *QUANTIZATIONS):
        raise UserError(f"--quantize {quantize!r}: CTranslate2 exports support {', '.join(QUANTIZATIONS)}")
    if task is None or task.name != "translation":
        raise UserError("--format ctranslate2 needs a text translation workdir (its vocabularies name the tokens "
                        "CTranslate2 reads)")
    path = Path(out)
    if path.exists() and any(path.iterdir()) and not (path / FRONT_END_FILE).is_file():
        raise UserError(f"--out {path} is a non-empty directory without {FRONT_END_FILE}; choose a new or empty one")
    vocab = {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()}
    spec = build_spec(cfg, params, vocab)
    ct2 = _ctranslate2()

    class S2SJaxConverter(ct2.converters.Converter):
        """CTranslate2's converter protocol over the spec built above (validate, quantize, save)."""

        def _load(self) -> Any:
            return spec

    if path.exists():
        shutil.rmtree(path)
    S2SJaxConverter().convert(str(path), quantization=quantize)
    record = {
        "format": FORMAT, "version": VERSION, "preset": preset, "config": cfg.to_dict(), "vocab": vocab,
        "special_ids": {"pad": cfg.pad_id, "bos": cfg.bos_id, "eos": cfg.eos_id},
        "tokenizer": tokenizer_spec(task, path), "max_positions": _max_positions(cfg),
        "quantization": quantize or "float32",
    }
    (path / FRONT_END_FILE).write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return record


def _max_positions(cfg: ModelConfig) -> int:
    """Rows of the position tables written (see the module docstring)."""
    return cfg.max_len


def export_workdir(workdir: str | Path, out: str | Path, quantize: str | None = None,
                   which: str | int = "best") -> dict[str, Any]:
    """`s2s-jax export --format ctranslate2`: a checkpoint of a training workdir -> a CTranslate2 model in `out`."""
    from s2s_jax.run.workdir import load_run

    run = load_run(workdir, which)
    check_supported(run.config.model)
    return export_ctranslate2(run.config.model, run.params, out, task=run.task, preset=run.config.preset or None,
                              quantize=quantize)


def describe(record: dict[str, Any], out: str | Path) -> str:
    """A few lines for the terminal."""
    path = Path(out)
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return (f"exported {record['config']['family']} model to CTranslate2 in {path} ({record['quantization']}, "
            f"{size / 1e6:.2f} MB); translate with export.ctranslate2_runtime.CT2Translator.load({str(path)!r})")
