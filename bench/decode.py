"""Decoding speed: sentences/s of greedy and beam 5 on test sentences, jitted JAX vs torch_ref's eager loop.

    python bench/decode.py --workdir runs/multi30k [--n 500] [--batch-size 100] [--beam 5]

Both sides decode the same chunks (sorted by length, padded to the same bucket
widths, the same per-row length limits a * len + b) with the same weights (Flax
params converted by torch_ref.convert). JAX is timed after one warm-up pass (its
compilations are reported separately); torch needs none. The token agreement
column checks that both implement the same search. torch runs with --torch-threads
(default 1; JAX/XLA uses its own thread pool).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from s2s_jax.decoding.translate import DecodeOptions, Translator  # noqa: E402
from s2s_jax.workdir import load_run  # noqa: E402
from torch_ref import build_model as build_torch  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402
from torch_ref.decoding import beam_search, greedy_decode  # noqa: E402


def torch_decode(tmodel: torch.nn.Module, translator: Translator, src: np.ndarray, src_lengths: np.ndarray,
                 opts: DecodeOptions) -> list[np.ndarray]:
    """The Translator's chunking (order, widths, limits) with torch_ref's decoding loops."""
    cfg = translator.cfg
    n = len(src)
    order = np.argsort(-src_lengths, kind="stable")
    out: list[np.ndarray | None] = [None] * n
    chunk = min(translator.batch_size, n)
    for start in range(0, n, chunk):
        rows = order[start : start + chunk]
        real = len(rows)
        rows = np.concatenate([rows, np.repeat(rows[:1], chunk - real)])
        sl = src_lengths[rows]
        width = translator._width(sl, src.shape[1])
        max_len, limits = translator._limits(width, sl)
        s, lt, lim = (torch.from_numpy(np.ascontiguousarray(a)).long() for a in (src[rows, :width], sl, limits))
        if opts.method == "beam":
            r = beam_search(tmodel, s, lt, beam=opts.beam, max_len=max_len, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                            pad_id=cfg.pad_id, alpha=opts.alpha, row_max_len=lim)
            tokens, lengths = r.tokens[:, 0], r.lengths[:, 0]
        else:
            tokens, lengths = greedy_decode(tmodel, s, lt, max_len=max_len, bos_id=cfg.bos_id, eos_id=cfg.eos_id,
                                            pad_id=cfg.pad_id, row_max_len=lim)
        tokens, lengths = tokens.numpy(), lengths.numpy()
        for j in range(real):
            out[rows[j]] = tokens[j, : lengths[j]]
    return out  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a run trained with --data (e.g. multi30k)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=500, help="number of test sentences")
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.0)
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="torch intra-op threads (default 1: on a busy 2-core machine more threads oversubscribe "
                         "the cores and every small op slows down many times)")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir")
    args = ap.parse_args()

    torch.set_num_threads(args.torch_threads)
    run = load_run(args.workdir)
    pairs = run.task.read_splits([args.split], data_dir=args.data_dir, manual_dir=args.manual_dir)[args.split]
    texts = [s for s, _ in pairs[: args.n]]
    src, src_lengths = run.task.encode_inputs(texts)
    translator = Translator(run.cfg, run.params, run.task, args.batch_size)
    tmodel = build_torch(run.cfg)
    tmodel.load_state_dict(flax_to_torch(run.cfg, run.params))
    tmodel.eval()
    print(f"{run.cfg.family} emb {run.cfg.emb_dim} hid {run.cfg.hid_dim}, {len(texts)} sentences of {args.split}, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}")
    print(f"{'decoding':<10} {'jax sent/s':>11} {'torch sent/s':>13} {'jax/torch':>10} {'same tokens':>12} "
          f"{'jax compile s':>14}")
    for opts in (DecodeOptions("greedy"), DecodeOptions("beam", beam=args.beam, alpha=args.alpha)):
        t0 = time.perf_counter()
        translator.decode_ids(src, src_lengths, opts)  # warm-up: compiles each chunk shape once
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        jax_out, _ = translator.decode_ids(src, src_lengths, opts)
        jax_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        torch_out = torch_decode(tmodel, translator, src, src_lengths, opts)
        torch_s = time.perf_counter() - t0
        same = np.mean([np.array_equal(a, b) for a, b in zip(jax_out, torch_out, strict=True)])
        name = "greedy" if opts.method == "greedy" else f"beam {opts.beam}"
        jr, tr = len(texts) / jax_s, len(texts) / torch_s
        print(f"{name:<10} {jr:>11.1f} {tr:>13.1f} {jr / tr:>9.2f}x {same:>11.1%} {compile_s - jax_s:>14.1f}")


if __name__ == "__main__":
    main()
