"""Named model configs (fairseq-style registry): a preset is a config plus a class.

Sizes are the origins' defaults; vocabulary sizes and special ids are filled in
from the data (`get(name, src_vocab_size=..., ...)`).
"""

from __future__ import annotations

from typing import Any

from s2s_jax.config import ConfigError, ModelConfig

PRESETS: dict[str, dict[str, Any]] = {
    # bentrevett/pytorch-seq2seq tutorial 1 (Sutskever et al. 2014).
    "bentrevett-lstm": dict(
        family="rnn", origin="bentrevett-lstm", cell="lstm", emb_dim=256, hid_dim=512,
        n_layers=2, dropout=0.5, context="none", param_init="uniform:0.08",
    ),
    # bentrevett/pytorch-seq2seq tutorial 2 (Cho et al. 2014).
    "bentrevett-gru": dict(
        family="rnn", origin="bentrevett-gru", cell="gru", emb_dim=256, hid_dim=512,
        n_layers=1, dropout=0.5, context="cho", param_init="normal:0.01",
    ),
    # seed 004 / d2l `Seq2SeqEncoder` + `Seq2SeqDecoder`.
    "d2l-seq2seq": dict(
        family="rnn", origin="d2l-seq2seq", cell="gru", emb_dim=32, hid_dim=32,
        n_layers=2, dropout=0.1, context="d2l", embed_dropout=False,
    ),
    # seed 002's character addition model: embedding width == hidden width.
    "addition-gru": dict(
        family="rnn", origin="seed002", cell="gru", emb_dim=128, hid_dim=128,
        n_layers=1, dropout=0.0, context="none", embed_dropout=False,
    ),
    # --- attention family (s2s_jax/models/attention.py) ---
    # bentrevett/pytorch-seq2seq tutorials 3/4 (Bahdanau et al. 2015): bi-GRU encoder,
    # packed and masked. The tutorial draws weights N(0, 0.01) and zeroes biases.
    "bentrevett-attention": dict(
        family="attention", origin="bentrevett-attention", attention="additive", cell="gru",
        bidirectional=True, emb_dim=256, hid_dim=512, n_layers=1, dropout=0.5, param_init="normal:0.01",
    ),
    # seed 003 / d2l `Seq2SeqEncoder` + `Seq2SeqAttentionDecoder` with `AdditiveAttention`.
    "d2l-bahdanau": dict(
        family="attention", origin="d2l-bahdanau", attention="additive", cell="gru", emb_dim=32,
        hid_dim=32, n_layers=2, dropout=0.1, embed_dropout=False,
    ),
    # seed 000, the PyTorch tutorial's EncoderRNN + AttnDecoderRNN (MAX_LENGTH = 10).
    "tutorial-attn": dict(
        family="attention", origin="pytorch-tutorial", attention="location", cell="gru", emb_dim=256,
        hid_dim=256, n_layers=1, dropout=0.1, max_len=10,
    ),
    # Luong et al. 2015 global attention (no origin code): `attention` dot/general/concat.
    "luong": dict(
        family="attention", origin="", attention="general", input_feeding=True, cell="lstm", emb_dim=256,
        hid_dim=512, n_layers=2, dropout=0.2, param_init="uniform:0.1",
    ),
    # seed 002's `Attention` (W_a over [encoder; decoder], v_a) in a GRU decoder, addition chars.
    "addition-attn": dict(
        family="attention", origin="seed002-attention", attention="additive", cell="gru", emb_dim=128,
        hid_dim=128, n_layers=1, dropout=0.0, embed_dropout=False,
        src_vocab_size=14, tgt_vocab_size=14, pad_id=11, bos_id=12, eos_id=13,
    ),
    # --- convs2s and transformer families (s2s_jax/models/convs2s.py, transformer.py) ---
    # seed 001 / bentrevett tutorial 5 (Gehring et al. 2017): causal padding filled with pad_id.
    "bentrevett-convs2s": dict(
        family="convs2s", origin="bentrevett-convs2s", conv_style="bentrevett", emb_dim=256, hid_dim=512,
        n_layers=10, kernel_size=3, dropout=0.25, max_len=100, pad_fill="pad_id",
    ),
    # Gehring et al. 2017 / fairseq `fconv` (sizes of fconv_iwslt_de_en): weight norm, paper init,
    # per-layer attention, encoder gradient scaling. Training intent: nesterov SGD lr 0.25, clip 0.1.
    "convs2s": dict(
        family="convs2s", origin="", conv_style="fconv", weight_norm=True, emb_dim=256, hid_dim=256,
        n_layers=4, kernel_size=3, dropout=0.2, max_len=1024, pad_fill="zero",
    ),
    # bentrevett tutorial 6: post-LN, learned positions, xavier init.
    "bentrevett-transformer": dict(
        family="transformer", origin="bentrevett-transformer", hid_dim=256, emb_dim=256, n_layers=3,
        n_heads=8, ff_dim=512, dropout=0.1, max_len=100, pre_ln=False, positions="learned",
    ),
    # A modern Transformer (base sizes): pre-LN with final norms, sinusoidal positions (max_len only
    # sizes the decoding cache), output layer tied to the decoder embedding. Training intent:
    # label_smoothing 0.1, adam(0.9, 0.98) with inverse-sqrt warmup (read by the trainer).
    "transformer": dict(
        family="transformer", origin="", hid_dim=512, emb_dim=512, n_layers=6, n_heads=8, ff_dim=2048,
        dropout=0.1, max_len=256, pre_ln=True, positions="sinusoidal", tie_embeddings=True,
    ),
    # --- marian family (s2s_jax/models/marian.py) ---
    # Hugging Face MarianMTModel as the OPUS-MT models have it (Helsinki-NLP/opus-mt-*): post-LN, Marian's
    # sinusoids, swish, embeddings x sqrt(512), the output layer tied to the decoder's table. `s2s-jax import
    # hf-marian` fills in the sizes, vocabulary, ids and table sharing of the checkpoint it reads (OPUS-MT's
    # encoder and decoder share one table: share_embeddings, which needs one vocabulary, so the preset leaves it
    # off for tasks with two); `s2s-jax import fairseq` reads fairseq transformers into it too.
    "marian": dict(
        family="marian", origin="hf-marian", hid_dim=512, emb_dim=512, n_layers=6, n_heads=8, ff_dim=2048,
        dropout=0.1, max_len=512, positions="marian", activation="swish", tie_embeddings=True,
        scale_embedding=True,
    ),
}


def names() -> list[str]:
    return sorted(PRESETS)


def get(name: str, **overrides: Any) -> ModelConfig:
    """The config of preset `name` with `overrides` applied (unknown keys are errors)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names())}")
    return ModelConfig().replace(**PRESETS[name]).replace(**overrides)
