"""s2s-jax: sequence-to-sequence models in JAX/Flax with PyTorch and ONNX mirrors."""

from s2s_jax import presets
from s2s_jax.config import ConfigError, ModelConfig
from s2s_jax.models import build_model

__all__ = ["ConfigError", "ModelConfig", "build_model", "presets"]
__version__ = "0.1.0"
