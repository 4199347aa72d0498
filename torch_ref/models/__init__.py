"""torch_ref model registry: family -> (module class, conversion table)."""

from __future__ import annotations

from torch_ref.models import attention, convs2s, rnn, transformer

# family -> nn.Module class taking a ModelConfig
MODELS = {
    "rnn": rnn.RNNSeq2Seq, "attention": attention.AttentionSeq2Seq, "convs2s": convs2s.ConvS2S,
    "transformer": transformer.TransformerSeq2Seq,
}
# family -> conversion table (see torch_ref.convert)
TABLES = {
    "rnn": rnn.param_table, "attention": attention.param_table, "convs2s": convs2s.param_table,
    "transformer": transformer.param_table,
}
