"""torch_ref model registry: family -> (module class, conversion table)."""

from __future__ import annotations

from torch_ref.models import rnn

# family -> nn.Module class taking a ModelConfig
MODELS = {"rnn": rnn.RNNSeq2Seq}
# family -> conversion table (see torch_ref.convert)
TABLES = {"rnn": rnn.param_table}
