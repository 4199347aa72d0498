"""fairseq `transformer` checkpoints into the marian family (Hugging Face's Marian is fairseq's transformer).

What loads: the `transformer*` archs below with the same embedding width, feed-forward width, depth, heads,
layer-norm placement (`--*-normalize-before`) and position kind on both sides; sinusoidal positions
(fairseq's table, counted from pad + 1) or learned ones (`--*-learned-pos`: rows pad + 1 onwards are kept);
`--share-all-embeddings` (one table), `--share-decoder-input-output-embed` (tied output), or neither;
activation relu, gelu or swish. What does not (a CheckpointError naming it): layernorm_embedding, adaptive
softmax, cross-self-attention, no positions, project_in/out dims, the decoder without its final norm.

The key table: fairseq `encoder.X` / `decoder.X` is the mirror's `model.encoder.X` / `model.decoder.X` (the
layer names are the same: HF's BART, which Marian's code copies, was ported from fairseq), except the token
tables (`model.shared` when shared), the output projection (`lm_head`, or dropped when tied after checking
it is the table) and learned positions (offset rows). Version buffers and sinusoid caches
(`_float_tensor`, `weights`) carry nothing and are dropped; pre-0.9 names (`layer_norms.i`, combined
`in_proj_weight`) are upgraded as fairseq's `upgrade_state_dict_named` does. fairseq has no output bias:
`final_logits_bias` is zeros.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from s2s_jax import presets
from s2s_jax.config import ModelConfig
from s2s_jax.data.vocab import Vocab
from s2s_jax.importers.hf_marian import expected_shapes
from s2s_jax.importers.weights import CheckpointError, check_state

BASE: dict[str, Any] = {
    "encoder_embed_dim": 512, "encoder_ffn_embed_dim": 2048, "encoder_layers": 6, "encoder_attention_heads": 8,
    "encoder_normalize_before": False, "encoder_learned_pos": False, "decoder_layers": 6,
    "decoder_attention_heads": 8, "decoder_normalize_before": False, "decoder_learned_pos": False,
    "attention_dropout": 0.0, "activation_dropout": 0.0, "relu_dropout": 0.0, "activation_fn": "relu",
    "dropout": 0.1, "share_decoder_input_output_embed": False, "share_all_embeddings": False,
    "no_token_positional_embeddings": False, "layernorm_embedding": False, "no_scale_embedding": False,
    "max_source_positions": 1024, "max_target_positions": 1024, "adaptive_softmax_cutoff": None,
    "cross_self_attention": False, "no_decoder_final_norm": False, "adaptive_input": False,
}
_BIG = {"encoder_embed_dim": 1024, "encoder_ffn_embed_dim": 4096, "encoder_attention_heads": 16,
        "decoder_attention_heads": 16, "dropout": 0.3}
# each named architecture's defaults over BASE (fairseq/models/transformer/transformer_legacy.py)
ARCHS: dict[str, dict[str, Any]] = {
    "transformer": {}, "transformer_wmt_en_de": {},
    "transformer_tiny": {"encoder_embed_dim": 64, "encoder_ffn_embed_dim": 64, "encoder_layers": 2,
                         "encoder_attention_heads": 2, "decoder_layers": 2, "decoder_attention_heads": 2},
    "transformer_iwslt_de_en": {"encoder_embed_dim": 512, "encoder_ffn_embed_dim": 1024, "encoder_attention_heads": 4,
                                "decoder_attention_heads": 4},
    "transformer_vaswani_wmt_en_de_big": _BIG, "transformer_vaswani_wmt_en_fr_big": {**_BIG, "dropout": 0.1},
    "transformer_wmt_en_de_big": {**_BIG, "attention_dropout": 0.1},
    "transformer_wmt_en_de_big_t2t": {**_BIG, "encoder_normalize_before": True, "decoder_normalize_before": True,
                                      "attention_dropout": 0.1, "activation_dropout": 0.1},
}
ACTIVATIONS = {"relu": "relu", "gelu": "gelu", "swish": "swish"}
UNSUPPORTED = ("layernorm_embedding", "no_token_positional_embeddings", "cross_self_attention", "adaptive_input")


def settings(arch: str, args: dict[str, Any]) -> dict[str, Any]:
    """`args` completed as fairseq's arch functions complete them (decoder sizes default to the encoder's)."""
    a = {**BASE, **ARCHS[arch], **{k: v for k, v in args.items() if v is not None}}
    for name in ("embed_dim", "ffn_embed_dim"):
        if args.get(f"decoder_{name}") is None:
            a[f"decoder_{name}"] = a[f"encoder_{name}"]
    if args.get("decoder_output_dim") is None:
        a["decoder_output_dim"] = a["decoder_embed_dim"]
    if a["share_all_embeddings"]:
        a["share_decoder_input_output_embed"] = True
    return a


def model_config(a: dict[str, Any], src: Vocab, tgt: Vocab, source: str) -> ModelConfig:
    for name in ("embed_dim", "ffn_embed_dim", "layers", "attention_heads", "normalize_before", "learned_pos"):
        if a[f"encoder_{name}"] != a[f"decoder_{name}"]:
            raise CheckpointError(f"{source}: encoder_{name}={a[f'encoder_{name}']} differs from decoder_{name}="
                                  f"{a[f'decoder_{name}']}; the marian family is the same on both sides")
    bad = [n for n in UNSUPPORTED if a.get(n)] + (["adaptive_softmax_cutoff"] if a["adaptive_softmax_cutoff"] else [])
    if a["decoder_output_dim"] != a["decoder_embed_dim"]:
        bad.append("decoder_output_dim")
    if a["decoder_normalize_before"] and a["no_decoder_final_norm"]:
        bad.append("no_decoder_final_norm")
    if bad:
        raise CheckpointError(f"{source}: --{bad[0].replace('_', '-')} is not supported by the importer")
    if a["activation_fn"] not in ACTIVATIONS:
        raise CheckpointError(f"{source}: activation_fn {a['activation_fn']!r} is not one of {sorted(ACTIVATIONS)}")
    learned = bool(a["encoder_learned_pos"])
    if learned and a["max_source_positions"] != a["max_target_positions"]:
        raise CheckpointError(f"{source}: learned positions need max_source_positions == max_target_positions")
    width = int(a["encoder_embed_dim"])
    return presets.get(
        "marian", origin="fairseq", src_vocab_size=len(src), tgt_vocab_size=len(tgt), hid_dim=width, emb_dim=width,
        n_layers=int(a["encoder_layers"]), n_heads=int(a["encoder_attention_heads"]),
        ff_dim=int(a["encoder_ffn_embed_dim"]), pre_ln=bool(a["encoder_normalize_before"]),
        positions="learned" if learned else "fairseq", activation=ACTIVATIONS[a["activation_fn"]],
        share_embeddings=bool(a["share_all_embeddings"]), tie_embeddings=bool(a["share_decoder_input_output_embed"]),
        scale_embedding=not a["no_scale_embedding"], dropout=float(a["dropout"]),
        attention_dropout=float(a["attention_dropout"]),
        activation_dropout=float(a["activation_dropout"] or a["relu_dropout"] or 0.0),
        max_len=int(max(a["max_source_positions"], a["max_target_positions"])),
        pad_id=tgt.pad_id, bos_id=tgt.bos_id, eos_id=tgt.eos_id,
    )


def upgrade(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old fairseq names as fairseq's `upgrade_state_dict_named` renames them; buffers that carry nothing dropped."""
    out: dict[str, np.ndarray] = {}
    norms = {"encoder": ("self_attn_layer_norm", "final_layer_norm"),
             "decoder": ("self_attn_layer_norm", "encoder_attn_layer_norm", "final_layer_norm")}
    for key, value in state.items():
        if key.endswith(".version") or key.endswith("embed_positions._float_tensor") or \
                key.endswith("embed_positions.weights"):
            continue
        parts = key.split(".")
        if len(parts) == 6 and parts[1] == "layers" and parts[3] == "layer_norms":  # side.layers.i.layer_norms.j.w
            key = ".".join(parts[:3] + [norms[parts[0]][int(parts[4])], parts[5]])
        if key.endswith("in_proj_weight") or key.endswith("in_proj_bias"):
            prefix, kind = key.rsplit(".", 1)
            for name, piece in zip(("q_proj", "k_proj", "v_proj"), np.split(value, 3, axis=0), strict=True):
                out[f"{prefix}.{name}.{kind.replace('in_proj_', '')}"] = piece
            continue
        out[key.replace("decoder.embed_out", "decoder.output_projection.weight")] = value
    return out


def _drop_tied(state: dict[str, np.ndarray], key: str, of: str, source: str) -> None:
    if key in state and of in state:
        if state[key].shape != state[of].shape or not np.array_equal(state[key], state[of]):
            raise CheckpointError(f"{source}: {key!r} should be tied to {of!r} (per the checkpoint's args) but holds "
                                  "other values")
        del state[key]


def convert(arch: str, args: dict[str, Any], state: dict[str, np.ndarray], src: Vocab, tgt: Vocab,
            source: str) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """(marian-family config, state dict in the mirror's keys) of a fairseq transformer checkpoint."""
    a = settings(arch, args)
    cfg = model_config(a, src, tgt, source)
    state = upgrade(state)
    if cfg.share_embeddings:
        _drop_tied(state, "decoder.embed_tokens.weight", "encoder.embed_tokens.weight", source)
    if cfg.tie_embeddings:
        _drop_tied(state, "decoder.output_projection.weight", "decoder.embed_tokens.weight", source)
        _drop_tied(state, "decoder.output_projection.weight", "encoder.embed_tokens.weight", source)
    offset = cfg.pad_id + 1
    table: dict[str, str] = {}
    expected: dict[str, tuple[int, ...]] = {}
    for key, shape in expected_shapes(cfg).items():
        if key == "final_logits_bias":
            continue
        theirs = {"model.shared.weight": "encoder.embed_tokens.weight",
                  "lm_head.weight": "decoder.output_projection.weight"}.get(key, key.removeprefix("model."))
        table[theirs] = key
        expected[theirs] = (shape[0] + offset, shape[1]) if key.endswith("embed_positions.weight") else shape
    check_state(state, expected, source)
    out = {table[k]: (v[offset:] if k.endswith("embed_positions.weight") else v) for k, v in state.items()}
    out["final_logits_bias"] = np.zeros((1, cfg.tgt_vocab_size), np.float32)
    return cfg, out
