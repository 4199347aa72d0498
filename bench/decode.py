"""Decoding speed: sentences/s of greedy and beam search, jitted JAX vs eager torch_ref vs the ONNX runtime.

    python bench/decode.py --workdir runs/multi30k [--batch-sizes 1,64] [--n 500] [--n-batch1 50] [--beam 5]

The workdir's best checkpoint is exported to ONNX first (`export.onnx_export.
export_workdir`, into a temporary directory unless `--export-dir` names one),
then all three decode the same test sentences in the same chunks: sorted by
length, cut into `batch size` rows, each padded to the same bucket width, each
row stopping at the same limit a * source length + b (eos forced there) as
`s2s-jax translate` does. Same weights everywhere (Flax params; torch_ref via
torch_ref.convert; ONNX graphs exported from torch_ref).
- JAX: `s2s_jax.run.translate.Translator.decode_chunk` (jitted loops per
  chunk), timed after a warm-up pass that compiles each chunk shape (reported apart);
- torch_ref: eager, inference mode, driven by the numpy search of the ONNX runtime
  (`export.search.search` over `export.graphs.numpy_stepper`), so torch and ORT run
  the same search and differ only in their model steps;
- ORT: the onnxruntime-only `export.runtime.Translator.search` (the same numpy
  search over the encoder and decoder-step sessions) with the per-row limits.
All three are the one search contract (`s2s_jax.decoding.search`): beam 1 is greedy.
The three take turns chunk by chunk, so drift in this shared machine's speed
falls on all of them alike. The agreement columns count sentences with identical tokens. torch and ORT use
`--torch-threads` / `--ort-threads` intra-op threads (default: one per core, as
XLA uses), printed in the header. This is a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hardware import machine_line  # noqa: E402

from export.graphs import numpy_stepper  # noqa: E402
from export.onnx_export import export_workdir  # noqa: E402
from export.runtime import Translator as OrtTranslator  # noqa: E402
from export.search import search  # noqa: E402
from s2s_jax.config import ModelConfig  # noqa: E402
from s2s_jax.run.config import DecodeOptions  # noqa: E402
from s2s_jax.run.translate import Chunk, Translator  # noqa: E402
from s2s_jax.run.workdir import load_run  # noqa: E402
from torch_ref import build_model as build_torch  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402

Outputs = list[np.ndarray]
Decoder = Callable[[Chunk], tuple[np.ndarray, np.ndarray]]  # chunk -> (tokens [B, L], lengths [B])


def interleaved(translator: Translator, src: np.ndarray, src_lengths: np.ndarray,
                decoders: dict[str, Decoder]) -> tuple[dict[str, float], dict[str, Outputs]]:
    """Seconds and outputs (in input order) of every decoder over the same chunks, taking turns chunk by chunk
    (who goes first rotates), so a slow minute on this shared machine falls on all of them alike."""
    names = list(decoders)
    times = dict.fromkeys(names, 0.0)
    outs: dict[str, list] = {name: [None] * len(src) for name in names}
    for i, c in enumerate(translator.chunks(src, src_lengths)):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            tokens, lengths = decoders[name](c)
            times[name] += time.perf_counter() - start
            for j in range(c.real):
                outs[name][c.rows[j]] = np.asarray(tokens[j, : lengths[j]])
    return times, outs


def jax_decoder(translator: Translator, opts: DecodeOptions) -> Decoder:
    return lambda c: translator.decode_chunk(c, opts)[:2]


def torch_decoder(tmodel: torch.nn.Module, cfg: ModelConfig, opts: DecodeOptions) -> Decoder:
    ids = dict(bos_id=cfg.bos_id, eos_id=cfg.eos_id, pad_id=cfg.pad_id)
    beam = opts.beam if opts.method == "beam" else 1

    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        step, enc, state = numpy_stepper(tmodel, torch.from_numpy(c.src).long(),
                                         torch.from_numpy(c.src_lengths).long(), c.max_len)
        r = search(step, enc, state, batch=len(c.src), beam=beam, max_len=c.max_len, alpha=opts.alpha,
                   row_max_len=c.limits, **ids)
        return r.tokens[:, 0], r.lengths[:, 0]

    return decode


def ort_decoder(runtime: OrtTranslator, opts: DecodeOptions) -> Decoder:
    beam = opts.beam if opts.method == "beam" else 1

    def decode(c: Chunk) -> tuple[np.ndarray, np.ndarray]:
        r = runtime.search(c.src, c.src_lengths, beam=beam, max_len=c.max_len, alpha=opts.alpha,
                           row_max_len=c.limits)
        return r.tokens[:, 0], r.lengths[:, 0]

    return decode


def same(a: Outputs, b: Outputs) -> np.ndarray:
    return np.array([np.array_equal(x, y) for x, y in zip(a, b, strict=True)])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a run trained with --data (e.g. multi30k)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-sizes", default="1,64", help="comma-separated chunk sizes")
    ap.add_argument("--n", type=int, default=500, help="sentences decoded at batch sizes > 1")
    ap.add_argument("--n-batch1", type=int, default=50, help="sentences decoded at batch size 1")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.0)
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count(), help="torch intra-op threads")
    ap.add_argument("--ort-threads", type=int, default=os.cpu_count(), help="onnxruntime intra-op threads")
    ap.add_argument("--export-dir", help="use (or write) the ONNX export here instead of a temporary directory")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    run = load_run(args.workdir, "best")
    pairs = run.task.read_splits([args.split], data_dir=args.data_dir, manual_dir=args.manual_dir)[args.split]
    cfg = run.config.model
    tmodel = build_torch(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, run.params))
    tmodel.eval()
    with tempfile.TemporaryDirectory(prefix="s2s-decode-bench-") as tmp:
        out = Path(args.export_dir or tmp)
        start = time.perf_counter()
        if not (out / "model.json").is_file():
            export_workdir(args.workdir, out, which=run.step)
        export_s = time.perf_counter() - start
        runtime = OrtTranslator.load(out, threads=args.ort_threads)
        print(machine_line())
        print(f"{cfg.family} emb {cfg.emb_dim} hid {cfg.hid_dim} layers {cfg.n_layers}, "
              f"{args.split} sentences of {args.workdir}; torch {torch.__version__} with {torch.get_num_threads()} "
              f"threads, onnxruntime {ort.__version__} with {args.ort_threads} intra-op threads, XLA all cores; "
              f"ONNX export {export_s:.1f}s")
        print()
        print("| batch | decoding | sentences | JAX sent/s | torch_ref sent/s | ORT sent/s | JAX/torch | JAX/ORT "
              "| JAX = torch | JAX = ORT | all three same | JAX compile s |")
        print("|" + "---|" * 12)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            texts = [s for s, _ in pairs[: args.n_batch1 if batch == 1 else args.n]]
            src, src_lengths = run.task.encode_inputs(texts)
            translator = Translator(cfg, run.params, run.task, batch)
            for opts in (DecodeOptions(), DecodeOptions(beam=args.beam, alpha=args.alpha)):
                decoders = {"JAX": jax_decoder(translator, opts), "torch": torch_decoder(tmodel, cfg, opts),
                            "ORT": ort_decoder(runtime, opts)}
                first = next(translator.chunks(src, src_lengths))
                for name in ("torch", "ORT"):
                    decoders[name](first)  # warm-up: first calls
                warm = time.perf_counter()
                interleaved(translator, src, src_lengths, {"JAX": decoders["JAX"]})  # compiles every chunk shape
                warm_s = time.perf_counter() - warm
                times, outs = interleaved(translator, src, src_lengths, decoders)
                jax_s = times["JAX"]
                rate = {k: len(texts) / v for k, v in times.items()}
                jt, jo = same(outs["JAX"], outs["torch"]), same(outs["JAX"], outs["ORT"])
                name = "greedy" if opts.method == "greedy" else f"beam {opts.beam}"
                print(f"| {batch} | {name} | {len(texts)} | {rate['JAX']:.1f} | {rate['torch']:.1f} | "
                      f"{rate['ORT']:.1f} | {rate['JAX'] / rate['torch']:.2f}x | {rate['JAX'] / rate['ORT']:.2f}x | "
                      f"{jt.mean():.1%} | {jo.mean():.1%} | {(jt & jo).mean():.1%} | {warm_s - jax_s:.1f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
