"""fairseq `fconv` checkpoints into the convs2s family's fconv style (weight norm, zero causal padding).

What loads: the `fconv*` archs whose encoder and decoder have the same number of layers, every layer the same
(channels, kernel) with the default residual of 1 (so no `projections`), attention at every decoder layer,
and `decoder_out_embed_dim` equal to the embedding width; learned positions (fairseq's rows from pad + 1 on
are kept), `--share-input-output-embed` or not. That is fconv's layout with uniform layers (`convs2s` preset);
`fconv_iwslt_de_en` (4 encoder, 3 decoder layers) and the wmt archs (widening layers) do not fit it and are a
CheckpointError naming what differs.

The key table: `fc1` / `fc2` / `fc3` are the mirror's `emb2hid` / `hid2emb` / `fc_out`, `convolutions.i`
its `convs.i`, `attention.i.in_projection` / `out_projection` its `attn_hid2emb.i` / `attn_emb2hid.i`,
`embed_tokens` / `embed_positions` its `tok_embedding` / `pos_embedding`. Weight norm: fairseq's
`weight_g` / `weight_v` are the parametrization's `original0` / `original1`; ConvTBC's kernel [k, in, out]
(norm over dim 2) is Conv1d's [out, in, k] (norm over dim 0), both transposed (2, 1, 0). A tied `fc3` (a
plain Linear sharing the embedding) becomes v = w, g = |w| per row, the same function.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

import numpy as np

from s2s_jax import presets
from s2s_jax.config import ModelConfig
from s2s_jax.data.vocab import Vocab
from s2s_jax.importers.weights import CheckpointError, check_state

_WMT_DE = "[(512, 3)] * 9 + [(1024, 3)] * 4 + [(2048, 1)] * 2"
_WMT_FR = "[(512, 3)] * 6 + [(768, 3)] * 4 + [(1024, 3)] * 3 + [(2048, 1)] * 1 + [(4096, 1)] * 1"
BASE: dict[str, Any] = {"dropout": 0.1, "encoder_embed_dim": 512, "encoder_layers": "[(512, 3)] * 20",
                        "decoder_embed_dim": 512, "decoder_layers": "[(512, 3)] * 20", "decoder_out_embed_dim": 256,
                        "decoder_attention": "True", "share_input_output_embed": False}
# fairseq/models/fconv.py's named architectures
ARCHS: dict[str, dict[str, Any]] = {
    "fconv": {},
    "fconv_iwslt_de_en": {"encoder_embed_dim": 256, "encoder_layers": "[(256, 3)] * 4", "decoder_embed_dim": 256,
                          "decoder_layers": "[(256, 3)] * 3", "decoder_out_embed_dim": 256},
    "fconv_wmt_en_ro": {"decoder_out_embed_dim": 512},
    "fconv_wmt_en_de": {"encoder_embed_dim": 768, "encoder_layers": _WMT_DE, "decoder_embed_dim": 768,
                        "decoder_layers": _WMT_DE, "decoder_out_embed_dim": 512},
    "fconv_wmt_en_fr": {"encoder_embed_dim": 768, "encoder_layers": _WMT_FR, "decoder_embed_dim": 768,
                        "decoder_layers": _WMT_FR, "decoder_out_embed_dim": 512},
}


def literal(text: str, source: str) -> Any:
    """fairseq `eval`s its layer specs ("[(256, 3)] * 4"); here only literals, `+` and `*` are evaluated."""

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | bool):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            items = [ev(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Add):
            left, right = ev(node.left), ev(node.right)
            return left * right if isinstance(node.op, ast.Mult) else left + right
        raise ValueError(ast.dump(node))

    try:
        return ev(ast.parse(str(text), mode="eval").body)
    except (SyntaxError, ValueError, TypeError) as e:
        raise CheckpointError(f"{source}: layer spec {text!r} is not a list of (channels, kernel) tuples ({e})") \
            from None


def model_config(a: dict[str, Any], state: dict[str, np.ndarray], src: Vocab, tgt: Vocab, source: str) -> ModelConfig:
    enc, dec = literal(a["encoder_layers"], source), literal(a["decoder_layers"], source)
    attention = literal(a["decoder_attention"], source)
    attention = [attention] * len(dec) if isinstance(attention, bool) else list(attention)
    layers = [tuple(x) + (1,) * (3 - len(x)) for x in enc + dec]
    problems = []
    if len(enc) != len(dec):
        problems.append(f"{len(enc)} encoder layers but {len(dec)} decoder layers")
    if len(set(layers)) != 1 or layers[0][2] != 1:
        problems.append(f"layers {sorted(set(layers))} differ or skip residuals (one (channels, kernel, 1) for all)")
    if not all(attention):
        problems.append(f"decoder_attention {attention} (attention at every layer)")
    if not a["encoder_embed_dim"] == a["decoder_embed_dim"] == a["decoder_out_embed_dim"]:
        problems.append(f"embedding widths {a['encoder_embed_dim']}/{a['decoder_embed_dim']}/"
                        f"{a['decoder_out_embed_dim']} (encoder, decoder, decoder out must be equal)")
    if problems:
        raise CheckpointError(f"{source}: this fconv layout does not fit the convs2s family: {problems[0]}")
    channels, kernel, _ = layers[0]
    if kernel % 2 != 1:
        raise CheckpointError(f"{source}: kernel width {kernel} is even; the convs2s family needs odd kernels")
    rows = {side: state.get(f"{side}.embed_positions.weight") for side in ("encoder", "decoder")}
    if any(r is None for r in rows.values()):
        raise CheckpointError(f"{source}: missing key 'encoder.embed_positions.weight' or "
                              "'decoder.embed_positions.weight' (fconv's learned positions)")
    max_len = {side: int(r.shape[0]) - tgt.pad_id - 1 for side, r in rows.items()}
    if max_len["encoder"] != max_len["decoder"]:
        raise CheckpointError(f"{source}: {max_len['encoder']} source but {max_len['decoder']} target positions")
    return presets.get(
        "convs2s", src_vocab_size=len(src), tgt_vocab_size=len(tgt), emb_dim=int(a["encoder_embed_dim"]),
        hid_dim=int(channels), n_layers=len(enc), kernel_size=int(kernel), dropout=float(a["dropout"]),
        max_len=max_len["encoder"], pad_id=tgt.pad_id, bos_id=tgt.bos_id, eos_id=tgt.eos_id,
    )


Rule = tuple[str, tuple[int, ...], Callable[[np.ndarray], np.ndarray]]


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _flip(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(2, 1, 0))


def table(cfg: ModelConfig) -> dict[str, Rule]:
    """fairseq key -> (mirror key, fairseq shape, fairseq -> mirror transform)."""
    e, h, k, offset = cfg.emb_dim, cfg.hid_dim, cfg.kernel_size, cfg.pad_id + 1
    rules: dict[str, Rule] = {}

    def linear(theirs: str, ours: str, n_in: int, n_out: int) -> None:
        wn = f"{ours}.parametrizations.weight"
        rules[f"{theirs}.weight_g"] = (f"{wn}.original0", (n_out, 1), _same)
        rules[f"{theirs}.weight_v"] = (f"{wn}.original1", (n_out, n_in), _same)
        rules[f"{theirs}.bias"] = (f"{ours}.bias", (n_out,), _same)

    def conv(theirs: str, ours: str) -> None:
        wn = f"{ours}.parametrizations.weight"
        rules[f"{theirs}.weight_g"] = (f"{wn}.original0", (1, 1, 2 * h), _flip)
        rules[f"{theirs}.weight_v"] = (f"{wn}.original1", (k, h, 2 * h), _flip)
        rules[f"{theirs}.bias"] = (f"{ours}.bias", (2 * h,), _same)

    for side, vocab in (("encoder", cfg.src_vocab_size), ("decoder", cfg.tgt_vocab_size)):
        rules[f"{side}.embed_tokens.weight"] = (f"{side}.tok_embedding.weight", (vocab, e), _same)
        rules[f"{side}.embed_positions.weight"] = (f"{side}.pos_embedding.weight", (cfg.max_len + offset, e),
                                                   lambda x: x[offset:])
        linear(f"{side}.fc1", f"{side}.emb2hid", e, h)
        linear(f"{side}.fc2", f"{side}.hid2emb", h, e)
        for i in range(cfg.n_layers):
            conv(f"{side}.convolutions.{i}", f"{side}.convs.{i}")
    for i in range(cfg.n_layers):
        linear(f"decoder.attention.{i}.in_projection", f"decoder.attn_hid2emb.{i}", h, e)
        linear(f"decoder.attention.{i}.out_projection", f"decoder.attn_emb2hid.{i}", e, h)
    linear("decoder.fc3", "decoder.fc_out", e, cfg.tgt_vocab_size)
    return rules


def _untie_fc3(state: dict[str, np.ndarray], source: str) -> None:
    """A shared `fc3` (plain Linear, weight = the embedding) as weight norm's (g, v) of the same weight."""
    w = state.pop("decoder.fc3.weight")
    if not np.array_equal(w, state.get("decoder.embed_tokens.weight", w)):
        raise CheckpointError(f"{source}: 'decoder.fc3.weight' should be tied to 'decoder.embed_tokens.weight' "
                              "(--share-input-output-embed) but holds other values")
    state["decoder.fc3.weight_v"] = w
    state["decoder.fc3.weight_g"] = np.linalg.norm(w, axis=1, keepdims=True).astype(np.float32)


def convert(arch: str, args: dict[str, Any], state: dict[str, np.ndarray], src: Vocab, tgt: Vocab,
            source: str) -> tuple[ModelConfig, dict[str, np.ndarray]]:
    """(convs2s-family config, state dict in the mirror's keys) of a fairseq fconv checkpoint."""
    a = {**BASE, **ARCHS[arch], **{k: v for k, v in args.items() if v is not None}}
    state = dict(state)
    version = state.pop("decoder.version", None)
    if version is not None and float(np.asarray(version).ravel()[0]) < 2:
        raise CheckpointError(f"{source}: decoder.version {float(np.asarray(version).ravel()[0])} < 2: an fconv "
                              "checkpoint from before fairseq's weight-norm change; load and save it with fairseq once")
    cfg = model_config(a, state, src, tgt, source)
    if a["share_input_output_embed"] and "decoder.fc3.weight" in state:
        _untie_fc3(state, source)
    rules = table(cfg)
    check_state(state, {k: shape for k, (_, shape, _) in rules.items()}, source)
    return cfg, {rules[k][0]: rules[k][2](v) for k, v in state.items()}
