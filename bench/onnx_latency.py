"""Greedy decoding speed: onnxruntime (fp32 and int8) vs torch eager vs JAX jit, same weights, one run.

    python bench/onnx_latency.py --preset bentrevett-gru --emb-dim 256 --hid-dim 512 --vocab 8000

Measures batch-1 latency (median ms per sentence) and batch-32 throughput
(sentences/s) of greedy decoding of `--max-len` tokens. ORT and torch run the
same numpy search (export/search.py) over their decoder step, so they differ
only in the model calls; JAX runs the library's jitted `lax.while_loop`
decoder (s2s_jax.decoding.greedy), timed after compilation. Random weights
rarely emit eos, so every backend decodes the full `--max-len` steps (the
printed length check says so). Ratios are relative to ORT fp32. `--workdir`
benchmarks a trained checkpoint instead. This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np
import onnxruntime as ort
import torch

import torch_ref
from export import graphs, search
from export.onnx_export import export_model
from export.runtime import Translator
from s2s_jax import build_model, presets
from s2s_jax.checks import init_params
from s2s_jax.decoding.greedy import make_greedy_decoder
from torch_ref.convert import flax_to_torch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="bentrevett-gru")
    p.add_argument("--workdir", help="use this training run's config and checkpoint instead of random weights")
    p.add_argument("--emb-dim", type=int)
    p.add_argument("--hid-dim", type=int)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--src-len", type=int, default=20)
    p.add_argument("--max-len", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, help="intra-op threads for ORT and torch (default: their choice)")
    return p.parse_args(argv)


def setup(args: argparse.Namespace):
    if args.workdir:
        from s2s_jax.workdir import load_run

        run = load_run(args.workdir)
        return run.cfg, run.params
    sizes = {k: v for k, v in (("emb_dim", args.emb_dim), ("hid_dim", args.hid_dim)) if v}
    cfg = presets.get(args.preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, **sizes)
    dummy = {"src": np.ones((1, 2), np.int32), "src_lengths": np.array([2], np.int32),
             "tgt_in": np.ones((1, 2), np.int32)}
    return cfg, init_params(cfg, dummy)


def source(cfg, batch: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(1, length // 2), length + 1, batch).astype(np.int32)
    src = rng.integers(3, cfg.src_vocab_size, (batch, length)).astype(np.int32)
    src[np.arange(length)[None, :] >= lengths[:, None]] = cfg.pad_id
    return src, lengths


def timed(fn: Callable[[], np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    """(median seconds, last output) after one warm-up call."""
    out = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, params = setup(args)
    ids = dict(bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id)
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
    tmodel.eval()
    jax_decode = make_greedy_decoder(build_model(cfg), args.max_len)

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        manifest = export_model(cfg, params, out, quantize="int8")
        export_s = time.perf_counter() - start
        ort_fp32 = Translator.load(out, threads=args.threads)
        ort_int8 = Translator.load(out, int8=True, threads=args.threads)

        def backends(src: np.ndarray, lengths: np.ndarray) -> dict[str, Callable[[], np.ndarray]]:
            def torch_eager() -> np.ndarray:
                step, enc, state = graphs.numpy_stepper(tmodel, torch.from_numpy(src.astype(np.int64)),
                                                        torch.from_numpy(lengths.astype(np.int64)), args.max_len)
                return search.search(step, enc, state, batch=len(src), max_len=args.max_len, **ids).tokens[:, 0]

            def jax_jit() -> np.ndarray:
                return np.asarray(jax.block_until_ready(jax_decode(params, src, lengths))[0])

            return {
                "ORT fp32": lambda: ort_fp32.search(src, lengths, max_len=args.max_len).tokens[:, 0],
                "ORT int8": lambda: ort_int8.search(src, lengths, max_len=args.max_len).tokens[:, 0],
                "torch eager": torch_eager,
                "JAX jit": jax_jit,
            }

        results: dict[str, dict[str, float]] = {}
        agree: dict[str, bool] = {}
        full_length = True
        for label, batch in (("b1", 1), ("bN", args.batch)):
            src, lengths = source(cfg, batch, args.src_len, seed=batch)
            outputs = {}
            for name, fn in backends(src, lengths).items():
                seconds, outputs[name] = timed(fn, args.repeats)
                results.setdefault(name, {})[label] = seconds
            for name, tokens in outputs.items():
                agree[name] = agree.get(name, True) and bool(np.array_equal(tokens, outputs["JAX jit"]))
            full_length &= not bool(np.any(outputs["JAX jit"] == cfg.eos_id))

    n = sum(x.size for x in jax.tree.leaves(params))
    print(f"# greedy decoding, {cfg.family}/{cfg.cell} emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers}, "
          f"vocab {cfg.tgt_vocab_size}, {n:,} params; source length <= {args.src_len}, {args.max_len} tokens "
          f"({'no eos: full length' if full_length else 'some rows stop at eos'})")
    int8 = manifest["int8"]["bytes_int8"] / manifest["int8"]["bytes_fp32"]
    threads = args.threads or 'default'
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, threads {threads}; "
          f"onnxruntime {ort.__version__}, torch {torch.__version__}, jax {jax.__version__}; "
          f"export took {export_s:.1f}s; int8 graphs {int8:.0%} of fp32 size")
    base = results["ORT fp32"]
    header = (f"| backend | batch 1 ms | latency / ORT fp32 | batch {args.batch} sent/s | throughput / ORT fp32 "
              "| tokens == JAX |")
    print(header)
    print("|" + "---|" * 6)
    for name, r in results.items():
        print(f"| {name} | {r['b1'] * 1e3:.2f} | {r['b1'] / base['b1']:.2f}x | {args.batch / r['bN']:.1f} | "
              f"{base['bN'] / r['bN']:.2f}x | {'yes' if agree[name] else 'no'} |")


if __name__ == "__main__":
    main()
