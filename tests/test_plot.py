"""The attention heatmap is a real, non-blank PNG of the expected size."""

import matplotlib.image
import numpy as np
import pytest

from s2s_jax.errors import UserError
from s2s_jax.plot import plot_attention


def test_plot_attention_writes_a_png(tmp_path):
    src, out = list("12+34}"), list("_46}")
    weights = np.zeros((6, 9), np.float32)  # extra rows/columns (padding) are cut off
    weights[np.arange(4), [0, 1, 3, 4]] = 1.0
    path = plot_attention(weights, src, out, tmp_path / "plots" / "attn.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    # figsize (max(3, 0.45 * 6 + 1.5), max(3, 0.45 * 4 + 1)) inches at 100 dpi
    assert image.shape[:2] == (300, 420)
    rgb = image[..., :3]
    assert rgb.std() > 0.05  # not blank
    assert (rgb.min(axis=-1) < 0.1).mean() > 0.05  # the dark (zero-weight) cells of the heatmap


def test_plot_attention_rejects_tokens_that_do_not_fit(tmp_path):
    with pytest.raises(UserError, match="do not fit attention weights of shape"):
        plot_attention(np.ones((2, 3)), list("abcd"), list("xy"), tmp_path / "a.png")
    with pytest.raises(UserError, match=r"must be \[T, S\]"):
        plot_attention(np.ones(3), list("abc"), list("x"), tmp_path / "a.png")
