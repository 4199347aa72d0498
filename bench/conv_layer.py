"""One ConvS2S conv + GLU layer, forward and backward, JAX vs torch: is the convolution where ConvS2S training
loses to torch eager?

    python bench/conv_layer.py [--batch 32] [--width 26] [--channels 256] [--kernel 3]

Times `grad` of sum(glu(conv(x, w))^2) with respect to x and w: `lax.conv_general_dilated`
(what s2s_jax/layers/conv.py uses), the same as an explicit im2col matmul, and torch's
`conv1d`. Best of `--reps`. This is a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardware import best_seconds, machine_line  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=26)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--kernel", type=int, default=3)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--torch-threads", type=int, default=torch.get_num_threads())
    args = p.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    b, t, c, k = args.batch, args.width, args.channels, args.kernel
    x = np.random.default_rng(0).normal(size=(b, t, c)).astype(np.float32)
    w = (0.05 * np.random.default_rng(1).normal(size=(k, c, 2 * c))).astype(np.float32)

    def conv(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1,), "VALID", dimension_numbers=("NWC", "WIO", "NWC"))
        return jnp.sum(jax.nn.glu(y, axis=-1) ** 2)

    def im2col(x, w):
        cols = jnp.concatenate([x[:, i : t - k + 1 + i] for i in range(k)], axis=-1)
        return jnp.sum(jax.nn.glu(cols @ w.reshape(k * c, 2 * c), axis=-1) ** 2)

    jx, jw = jnp.asarray(x), jnp.asarray(w)
    rows = {}
    for name, fn in (("JAX lax.conv_general_dilated", conv), ("JAX im2col matmul", im2col)):
        g = jax.jit(jax.grad(fn, argnums=(0, 1)))
        rows[name] = best_seconds(lambda g=g: jax.block_until_ready(g(jx, jw)), args.reps)
    tx = torch.tensor(x.transpose(0, 2, 1).copy(), requires_grad=True)
    tw = torch.tensor(w.transpose(2, 1, 0).copy(), requires_grad=True)

    def torch_step():
        tx.grad = tw.grad = None
        y = torch.nn.functional.conv1d(tx, tw)
        (torch.nn.functional.glu(y, dim=1) ** 2).sum().backward()

    rows["torch conv1d"] = best_seconds(torch_step, args.reps)
    print(machine_line())
    print(f"batch {b}, width {t}, {c} -> {2 * c} channels, kernel {k}; torch {args.torch_threads} threads\n")
    print("| implementation | conv + GLU forward and backward, ms |")
    print("|---|---|")
    for name, secs in rows.items():
        print(f"| {name} | {1000 * secs:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
