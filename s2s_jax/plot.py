"""Attention heatmaps (the figure of seed 002 and the PyTorch tutorial): output tokens down,
source tokens across. matplotlib is imported here only, with the Agg backend, so plotting
works on a headless machine and nothing else in s2s_jax needs matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from s2s_jax.errors import UserError


def plot_attention(weights: np.ndarray, src_tokens: Sequence[str], out_tokens: Sequence[str],
                   path: str | Path) -> Path:
    """Write a PNG heatmap of `weights` [T, S] (row t: output token t's weights over the source).

    Columns past `len(src_tokens)` (padding, or a location-attention model's max_len
    positions) are dropped; rows past `len(out_tokens)` too. Returns the written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2:
        raise UserError(f"attention weights must be [T, S], got shape {w.shape}")
    t, s = len(out_tokens), len(src_tokens)
    if t == 0 or s == 0 or t > w.shape[0] or s > w.shape[1]:
        raise UserError(f"{t} output and {s} source tokens do not fit attention weights of shape {w.shape}")
    w = w[:t, :s]
    fig, ax = plt.subplots(figsize=(max(3.0, 0.45 * s + 1.5), max(3.0, 0.45 * t + 1.0)))
    image = ax.imshow(w, cmap="bone", vmin=0.0, vmax=max(float(w.max()), 1e-6), aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(s), list(src_tokens), rotation=90)
    ax.set_yticks(range(t), list(out_tokens))
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
