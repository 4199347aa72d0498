"""Model configuration: one frozen dataclass, one naming across every family.

Configs are plain data (the flax `examples/wmt` style): a preset is a dict of
overrides over these defaults, and a run can be rebuilt from its JSON alone.
Fields a family does not use keep their defaults and are ignored by it.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from s2s_jax.errors import ConfigError

CELLS = ("rnn", "lstm", "gru")
CONTEXTS = ("none", "cho", "d2l")
PAD_FILLS = ("pad_id", "zero")
CONV_STYLES = ("bentrevett", "fconv")
POSITIONS = ("learned", "sinusoidal", "marian", "fairseq")
ACTIVATIONS = ("relu", "swish", "gelu")
ATTENTIONS = ("additive", "location", "dot", "general", "concat")

__all__ = ["ConfigError", "ModelConfig", "check_keys"]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Everything `build_model` needs; sizes, ids and family options.

    family: which model class (`rnn` for now).
    origin: the original code whose parameter names torch_ref reproduces
        (`bentrevett-lstm`, `bentrevett-gru`, `d2l-seq2seq`, `seed002`), or "".
    cell: recurrent cell, `rnn` (Elman tanh), `lstm` or `gru`.
    reset_after: GRU form; True is PyTorch's `r * (W_hn h + b_hn)`, False the
        textbook `W_hn (r * h)` of seed 002.
    context: how the encoder summary reaches the decoder: `none` (initial state
        only, Sutskever), `cho` (fed to every step and to the output layer),
        `d2l` (fed to every step).
    embed_dropout: dropout on embeddings (bentrevett) or only between layers (d2l).
    reverse_source: feed the source reversed (Sutskever et al.), within each
        row's true length so padding stays at the end (rnn and attention families).
    teacher_forcing: in training, the chance that a decoder step reads the gold previous token rather than
        its own argmax prediction (bentrevett tutorials 1-3 train with 0.5; 1.0: always gold, the fused
        teacher-forced pass). Drawn per step for the whole batch from the dropout RNG; rnn and attention.
    """

    family: str = "rnn"
    origin: str = ""
    src_vocab_size: int = 32
    tgt_vocab_size: int = 32
    emb_dim: int = 256
    hid_dim: int = 512
    n_layers: int = 1
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    cell: str = "gru"
    reset_after: bool = True
    bidirectional: bool = False
    reverse_source: bool = False
    teacher_forcing: float = 1.0
    context: str = "none"
    embed_dropout: bool = True
    param_init: str = "torch"
    kernel_size: int = 3
    n_heads: int = 8
    ff_dim: int = 512
    max_len: int = 100
    # --- convs2s and transformer families -------------------------------------
    # pad_fill: what the ConvS2S decoder's causal left padding holds: "pad_id"
    #   (the float value of pad_id in every channel, as bentrevett tutorial 5
    #   does) or "zero" (fairseq's LinearizedConvolution).
    # conv_style: "bentrevett" (seed 001: one attention projection pair shared by
    #   all decoder layers, residual from the dropped input, torch default init)
    #   or "fconv" (Gehring et al. / fairseq: per-layer attention, attention
    #   output scaled by sqrt(source length), encoder gradients scaled by
    #   1 / (2 * attention layers), the paper's initialization).
    # weight_norm: weight-normalized linears and convolutions (v and g stored).
    # pre_ln: Transformer layer norm before each sublayer plus final norms
    #   (False: post-LN, as bentrevett tutorial 6 and Vaswani et al.).
    # positions: "learned" (an embedding of max_len rows; longer inputs are an
    #   error) or "sinusoidal" (no length limit; max_len only sizes the KV cache).
    # tie_embeddings: the Transformer output layer reuses the decoder's token
    #   embedding matrix (no separate fc_out).
    pad_fill: str = "pad_id"
    conv_style: str = "bentrevett"
    weight_norm: bool = False
    pre_ln: bool = False
    positions: str = "learned"
    tie_embeddings: bool = False
    # --- attention family (s2s_jax/models/attention.py) ---
    # attention: the score function. `additive` (Bahdanau; bentrevett, d2l, seed 002),
    #   `location` (PyTorch tutorial, seed 000: weights from [emb; hidden] over max_len
    #   positions), Luong's `dot`, `general`, `concat`.
    # input_feeding: Luong's input feeding, the previous attentional hidden state is
    #   concatenated to the decoder input.
    attention: str = "additive"
    input_feeding: bool = False
    # --- marian family (s2s_jax/models/marian.py: Hugging Face MarianMTModel, fairseq transformer) ---
    # positions also takes "marian" (HF Marian's sinusoids: sines in the first half, cosines in the second,
    #   from position 0, table computed in float64) and "fairseq" (fairseq's SinusoidalPositionalEmbedding:
    #   the same halves with frequencies 10000^(-i/(d/2 - 1)), positions counted from pad_id + 1); both are
    #   tables of max_len rows, so max_len bounds source and target.
    # activation: the feed-forward nonlinearity, relu, swish (SiLU: OPUS-MT) or gelu (exact, erf).
    # share_embeddings: encoder and decoder read one token table (HF `model.shared`, fairseq
    #   --share-all-embeddings); needs src_vocab_size == tgt_vocab_size.
    # scale_embedding: token embeddings times sqrt(hid_dim) (HF scale_embedding, fairseq's default).
    # attention_dropout, activation_dropout: dropout on attention weights and after the activation
    #   (`dropout` is on embeddings and sublayer outputs), as HF and fairseq have them.
    activation: str = "relu"
    share_embeddings: bool = False
    scale_embedding: bool = True
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"cell={self.cell!r} is not one of {CELLS}")
        if self.context not in CONTEXTS:
            raise ConfigError(f"context={self.context!r} is not one of {CONTEXTS}")
        if self.attention not in ATTENTIONS:
            raise ConfigError(f"attention={self.attention!r} is not one of {ATTENTIONS}")
        for name in ("src_vocab_size", "tgt_vocab_size", "emb_dim", "hid_dim", "n_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ConfigError(f"{name}={getattr(self, name)} is outside tgt_vocab_size={self.tgt_vocab_size}")
        # convs2s / transformer options
        for name, valid in (("pad_fill", PAD_FILLS), ("conv_style", CONV_STYLES), ("positions", POSITIONS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}={getattr(self, name)!r} is not one of {valid}")
        if self.family == "convs2s" and self.kernel_size % 2 != 1:
            raise ConfigError(f"kernel_size={self.kernel_size} must be odd for convs2s (same-padded encoder convs)")
        if self.family == "transformer" and self.hid_dim % self.n_heads:
            raise ConfigError(f"hid_dim={self.hid_dim} must be divisible by n_heads={self.n_heads}")
        if self.activation not in ACTIVATIONS:
            raise ConfigError(f"activation={self.activation!r} is not one of {ACTIVATIONS}")
        for name in ("attention_dropout", "activation_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must be in [0, 1)")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(f"share_embeddings=True needs one vocabulary: src_vocab_size={self.src_vocab_size} "
                              f"!= tgt_vocab_size={self.tgt_vocab_size}")
        if self.positions in ("marian", "fairseq") and self.family != "marian":
            raise ConfigError(f"positions={self.positions!r} is implemented by the marian family, not {self.family!r}")
        if self.family == "marian" and self.hid_dim % self.n_heads:
            raise ConfigError(f"hid_dim={self.hid_dim} must be divisible by n_heads={self.n_heads}")
        if self.max_len < 1:
            raise ConfigError(f"max_len={self.max_len} must be >= 1")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ConfigError(f"teacher_forcing={self.teacher_forcing} must be in [0, 1] (1: always the gold token)")
        if self.teacher_forcing < 1.0 and not self.recurrent:
            raise ConfigError(f"teacher_forcing < 1 is implemented by the rnn and attention families (their "
                              f"decoders read one token a step), not {self.family!r}")
        # reverse_source is an RNN-encoder trick; the other families would silently ignore it.
        if self.reverse_source and not self.recurrent:
            raise ConfigError(f"reverse_source=True is implemented by the rnn and attention families, "
                              f"not {self.family!r}")

    @property
    def recurrent(self) -> bool:
        """The rnn and attention families: the ones `cell`, teacher forcing and reverse_source apply to."""
        return self.family in ("rnn", "attention")

    def replace(self, **overrides: Any) -> ModelConfig:
        """A copy with `overrides`; an unknown key is an error naming the valid ones."""
        check_keys(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        check_keys(data)
        return cls(**data)


def check_keys(data: dict[str, Any]) -> None:
    """Reject keys that are not ModelConfig fields, listing the valid ones."""
    valid = [f.name for f in dataclasses.fields(ModelConfig)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise ConfigError(f"unknown model config key(s) {unknown}; valid keys: {', '.join(valid)}")
