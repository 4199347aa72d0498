"""Hugging Face MarianMTModel (the OPUS-MT models) from a `save_pretrained` directory, into the marian family.

Reads, locally: `config.json` (a MarianConfig), `model.safetensors` (or its shards, or `pytorch_model.bin`,
weights only), `source.spm`, `target.spm`, `vocab.json` (and `target_vocab.json` with `separate_vocabs`),
optionally `tokenizer_config.json` and `generation_config.json`. What loads: every MarianConfig with the same
depth, width, heads and feed-forward size on both sides, activation swish/silu, relu or gelu, shared or
separate embeddings, tied or untied output layer. Ids come from config.json: pad_token_id, eos_token_id and
decoder_start_token_id (the decoder's first input, `bos_id` here; pad for OPUS-MT).

The weights are checked key by key against the layout the config implies (`expected_shapes`, the keys
torch_ref/models/marian.py's mirror has); what `save_pretrained` of other transformers versions adds and
the mirror does not hold is accepted when it carries nothing new: the sinusoid tables
(`embed_positions.weight`, if equal to the ones Marian computes) and tied copies of the shared table
(`model.encoder.embed_tokens.weight`, `lm_head.weight`, if equal to it). A missing `final_logits_bias` is
zeros, as transformers loads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from s2s_jax import presets
from s2s_jax.config import ModelConfig
from s2s_jax.data.imported_tokenizers import MarianTokenizer
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import UserError
from s2s_jax.importers import Imported
from s2s_jax.importers.weights import CheckpointError, check_state, load_safetensors, load_torch_pickle
from s2s_jax.layers.positions import marian_table

# MarianConfig's defaults, for keys a config.json leaves out
DEFAULTS: dict[str, Any] = {
    "vocab_size": 58101, "max_position_embeddings": 1024, "encoder_layers": 12, "decoder_layers": 12,
    "encoder_ffn_dim": 4096, "decoder_ffn_dim": 4096, "encoder_attention_heads": 16, "decoder_attention_heads": 16,
    "activation_function": "gelu", "d_model": 1024, "dropout": 0.1, "attention_dropout": 0.0,
    "activation_dropout": 0.0, "decoder_start_token_id": 58100, "scale_embedding": False, "pad_token_id": 58100,
    "eos_token_id": 0, "share_encoder_decoder_embeddings": True, "tie_word_embeddings": True,
}
ACTIVATIONS = {"swish": "swish", "silu": "swish", "relu": "relu", "gelu": "gelu"}


def _json(path: Path, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise UserError(f"{path} is missing; expected a MarianMTModel save_pretrained directory")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} does not hold a JSON object")
    return data


def model_config(config: dict[str, Any], source: str) -> ModelConfig:
    """The marian-family ModelConfig of a MarianConfig dict; architectures this family cannot express are errors."""
    if config.get("model_type") != "marian":
        raise CheckpointError(f"{source}: model_type {config.get('model_type')!r} is not 'marian' (wrong arch: "
                              "this importer reads MarianMTModel checkpoints)")
    archs = config.get("architectures") or ["MarianMTModel"]
    if "MarianMTModel" not in archs:
        raise CheckpointError(f"{source}: architectures {archs} do not include MarianMTModel (wrong arch)")
    c = {**DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
    for a, b in (("encoder_layers", "decoder_layers"), ("encoder_attention_heads", "decoder_attention_heads"),
                 ("encoder_ffn_dim", "decoder_ffn_dim")):
        if c[a] != c[b]:
            raise CheckpointError(f"{source}: {a}={c[a]} differs from {b}={c[b]}; the marian family has the same "
                                  "depth, heads and feed-forward width on both sides")
    if c["activation_function"] not in ACTIVATIONS:
        raise CheckpointError(f"{source}: activation_function {c['activation_function']!r} is not one of "
                              f"{sorted(ACTIVATIONS)}")
    vocab = int(c["vocab_size"])
    share = bool(c["share_encoder_decoder_embeddings"])
    tgt_vocab = vocab if share else int(c.get("decoder_vocab_size") or vocab)
    eos = c["eos_token_id"][0] if isinstance(c["eos_token_id"], list) else c["eos_token_id"]
    return presets.get(
        "marian", src_vocab_size=vocab, tgt_vocab_size=tgt_vocab, hid_dim=int(c["d_model"]), emb_dim=int(c["d_model"]),
        n_layers=int(c["encoder_layers"]), n_heads=int(c["encoder_attention_heads"]), ff_dim=int(c["encoder_ffn_dim"]),
        max_len=int(c["max_position_embeddings"]), activation=ACTIVATIONS[c["activation_function"]],
        share_embeddings=share, tie_embeddings=bool(c["tie_word_embeddings"]),
        scale_embedding=bool(c["scale_embedding"]), dropout=float(c["dropout"]),
        attention_dropout=float(c["attention_dropout"]), activation_dropout=float(c["activation_dropout"]),
        pad_id=int(c["pad_token_id"]), eos_id=int(eos), bos_id=int(c["decoder_start_token_id"]),
    )


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every key of the state dict of `cfg`, a marian-family config (as torch_ref's mirror and Hugging Face's
    save_pretrained name them; the pre-LN norms and learned positions are the fairseq import's)."""
    h, f = cfg.hid_dim, cfg.ff_dim
    shapes: dict[str, tuple[int, ...]] = {"final_logits_bias": (1, cfg.tgt_vocab_size)}
    if cfg.share_embeddings:
        shapes["model.shared.weight"] = (cfg.src_vocab_size, h)
    else:
        shapes["model.encoder.embed_tokens.weight"] = (cfg.src_vocab_size, h)
        shapes["model.decoder.embed_tokens.weight"] = (cfg.tgt_vocab_size, h)
    if not cfg.tie_embeddings:
        shapes["lm_head.weight"] = (cfg.tgt_vocab_size, h)
    for side in ("encoder", "decoder"):
        if cfg.positions == "learned":
            shapes[f"model.{side}.embed_positions.weight"] = (cfg.max_len, h)
        if cfg.pre_ln:
            shapes.update({f"model.{side}.layer_norm.weight": (h,), f"model.{side}.layer_norm.bias": (h,)})
        for i in range(cfg.n_layers):
            layer = f"model.{side}.layers.{i}"
            parts = {"self_attn_layer_norm": h, "final_layer_norm": h}
            attentions = ["self_attn"] + (["encoder_attn"] if side == "decoder" else [])
            if side == "decoder":
                parts["encoder_attn_layer_norm"] = h
            for name, width in parts.items():
                shapes.update({f"{layer}.{name}.weight": (width,), f"{layer}.{name}.bias": (width,)})
            for attn in attentions:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    shapes.update({f"{layer}.{attn}.{proj}.weight": (h, h), f"{layer}.{attn}.{proj}.bias": (h,)})
            shapes.update({f"{layer}.fc1.weight": (f, h), f"{layer}.fc1.bias": (f,),
                           f"{layer}.fc2.weight": (h, f), f"{layer}.fc2.bias": (h,)})
    return shapes


def _drop_copy(state: dict[str, np.ndarray], key: str, of: str, source: str) -> None:
    """Remove `key` from `state` if it is a tied copy of `of` (an error if it differs: it would be lost)."""
    if key not in state or of not in state:
        return
    if state[key].shape != state[of].shape or not np.array_equal(state[key], state[of]):
        raise CheckpointError(f"{source}: {key!r} should be tied to {of!r} (per config.json) but holds other values")
    del state[key]


def normalize(state: dict[str, np.ndarray], cfg: ModelConfig, source: str) -> dict[str, np.ndarray]:
    """`state` with the keys that carry nothing new removed (see the module docstring), before the strict check."""
    state = dict(state)
    for side in ("encoder", "decoder"):
        key = f"model.{side}.embed_positions.weight"
        if key in state:
            table = marian_table(cfg.max_len, cfg.hid_dim)
            if state[key].shape != table.shape or np.abs(state[key] - table).max() > 1e-5:
                raise CheckpointError(f"{source}: {key!r} is not the sinusoid table MarianMTModel computes for "
                                      f"{cfg.max_len} positions of width {cfg.hid_dim}")
            del state[key]
    if cfg.share_embeddings:
        for side in ("encoder", "decoder"):
            _drop_copy(state, f"model.{side}.embed_tokens.weight", "model.shared.weight", source)
    if cfg.tie_embeddings:
        table = "model.shared.weight" if cfg.share_embeddings else "model.decoder.embed_tokens.weight"
        _drop_copy(state, "lm_head.weight", table, source)
    state.setdefault("final_logits_bias", np.zeros((1, cfg.tgt_vocab_size), np.float32))
    return state


def read_weights(directory: Path) -> dict[str, np.ndarray]:
    """The state dict of model.safetensors (or its shards), else of pytorch_model.bin (torch, weights only)."""
    if (directory / "model.safetensors").is_file() or (directory / "model.safetensors.index.json").is_file():
        return load_safetensors(directory)
    if (directory / "pytorch_model.bin").is_file():
        data = load_torch_pickle(directory / "pytorch_model.bin")
        if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
            raise CheckpointError(f"{directory / 'pytorch_model.bin'} does not hold a state dict of tensors")
        return data
    raise UserError(f"{directory} has neither model.safetensors nor pytorch_model.bin")


def read_vocab(path: Path, tokenizer: dict[str, Any], roles: dict[str, int | None]) -> Vocab:
    """A Vocab in id order from a MarianTokenizer vocab.json (piece -> id); `roles` are config ids (None: the
    tokenizer's symbol), which must agree with tokenizer_config.json's symbols."""
    pieces = _json(path)
    tokens: list[str | None] = [None] * len(pieces)
    for piece, i in pieces.items():
        if not isinstance(i, int) or not 0 <= i < len(pieces) or tokens[i] is not None:
            raise CheckpointError(f"{path}: ids must be 0..{len(pieces) - 1}, each once; {piece!r} has {i!r}")
        tokens[i] = piece
    symbols = {}
    for role, default in (("pad", "<pad>"), ("eos", "</s>"), ("unk", "<unk>")):
        value = tokenizer.get(f"{role}_token", default)
        symbols[role] = value.get("content", default) if isinstance(value, dict) else str(value)
    for role, i in roles.items():
        if i is None:
            continue
        if not 0 <= i < len(tokens):
            raise CheckpointError(f"{path}: config.json's {role} id {i} is outside the vocabulary of {len(tokens)}")
        if role in symbols and tokens[i] != symbols[role]:
            raise CheckpointError(f"{path}: config.json's {role} id {i} is {tokens[i]!r}, the tokenizer's {role} "
                                  f"token is {symbols[role]!r}")
    bos = tokens[roles["bos"]] if roles.get("bos") is not None else symbols["pad"]
    if symbols["unk"] not in pieces:
        raise CheckpointError(f"{path} has no {symbols['unk']!r} token")
    return Vocab(tokens, pad=symbols["pad"], bos=bos, eos=symbols["eos"], unk=symbols["unk"])


def read_marian(directory: str | Path) -> Imported:
    """Config, checked weights, tokenizers and vocabularies of a MarianMTModel directory."""
    d = Path(directory)
    if not d.is_dir():
        raise UserError(f"{d} is not a directory (expected a MarianMTModel save_pretrained directory)")
    source = str(d)
    cfg = model_config(_json(d / "config.json"), source)
    tok_config = _json(d / "tokenizer_config.json", required=False)
    separate = bool(tok_config.get("separate_vocabs", False))
    if separate and cfg.share_embeddings:
        raise CheckpointError(f"{source}: tokenizer_config.json has separate_vocabs but config.json shares one "
                              "embedding table (share_encoder_decoder_embeddings)")
    tgt_roles = {"pad": cfg.pad_id, "eos": cfg.eos_id, "bos": cfg.bos_id}
    tgt_vocab = read_vocab(d / ("target_vocab.json" if separate else "vocab.json"), tok_config, tgt_roles)
    src_vocab = read_vocab(d / "vocab.json", tok_config, {"pad": None}) if separate else tgt_vocab
    for what, vocab, size in (("source", src_vocab, cfg.src_vocab_size), ("target", tgt_vocab, cfg.tgt_vocab_size)):
        if len(vocab) != size:
            raise CheckpointError(f"{source}: the {what} vocabulary has {len(vocab)} tokens, config.json {size}")
    protos = {}
    for name in ("source.spm", "target.spm"):
        if not (d / name).is_file():
            raise UserError(f"{d / name} is missing; the SentencePiece models come with the tokenizer")
        protos[name] = (d / name).read_bytes()
    src_tok = MarianTokenizer(protos["source.spm"], "source")
    tgt_tok = MarianTokenizer(protos["target.spm"], "target", None if separate else protos["source.spm"])
    state = normalize(read_weights(d), cfg, source)
    check_state(state, expected_shapes(cfg), source)
    beams = int(_json(d / "generation_config.json", required=False).get("num_beams") or 1)
    return Imported(cfg=cfg, state_dict=state, src_tok=src_tok, tgt_tok=tgt_tok, src_vocab=src_vocab,
                    tgt_vocab=tgt_vocab, preset="marian", source=source, decoding={"beam": beams})
