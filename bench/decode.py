"""Decoding speed: target tokens/s of greedy and beam search, JAX vs ONNX Runtime (fp32, int8) vs CTranslate2.

    python bench/decode.py --workdir runs/multi30k [--batch-sizes 1,64] [--n 500] [--n-batch1 50] [--beam 5]
        [--threads 1] [--forced 14] [--engines JAX,ORT,ORT-int8,CT2,CT2-int8] [--export-dir D] [--ct2-dir D]

The workdir's best checkpoint is exported once to ONNX (fp32 and `--quantize int8`, into `--export-dir`) and
to CTranslate2 (`--ct2-dir`; its int8 column is the same model loaded with compute_type int8, CTranslate2's
usual way), then every engine decodes the same test sentences in the same chunks (bench/decode_engines.py),
taking turns chunk by chunk, so drift in this shared machine's speed falls on all of them alike. The
engines: JAX (jitted `s2s_jax.decoding.search`, compile time reported apart), torch_ref (eager, optional),
ORT (`export.runtime`, the state kept in onnxruntime), CT2 (CTranslate2 with the export's front end).

Lengths: natural by default (each row until eos, at most a * source length + b tokens, eos forced there, as
`s2s-jax translate`); `--forced L` makes every row decode exactly L tokens (the issue's setting, where beam
search's stopping rules, ours and CTranslate2's, do not change the work). Tokens/s counts each engine's own
output tokens, eos included (forced: L a row, whatever the search returns, as no hypothesis ends). With natural
lengths the table adds the share of sentences whose tokens equal JAX's, and each engine's sacreBLEU on the
references (`tokenize='none'`: the `lc.norm.tok` text is tokenized already). Every engine gets `--threads`
intra-op threads (JAX: XLA's own pool; pin the process, e.g. `taskset -c 1`, to give everyone the same cores).
This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_engines import ct2_decoder, jax_decoder, ort_decoder, torch_decoder  # noqa: E402
from hardware import machine_line  # noqa: E402

from export.ctranslate2_export import export_ctranslate2  # noqa: E402
from export.ctranslate2_runtime import CT2Translator  # noqa: E402
from export.onnx_export import export_model  # noqa: E402
from export.runtime import Translator as OrtTranslator  # noqa: E402
from s2s_jax.run.config import DecodeOptions  # noqa: E402
from s2s_jax.run.translate import Translator  # noqa: E402
from s2s_jax.run.workdir import load_run  # noqa: E402
from torch_ref import build_model as build_torch  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402

ENGINES = ("JAX", "torch", "ORT", "ORT-int8", "CT2", "CT2-int8")


def interleaved(translator: Translator, src: np.ndarray, src_lengths: np.ndarray,
                decoders: dict) -> tuple[dict[str, float], dict[str, list]]:
    """Seconds and outputs (in input order) of every decoder over the same chunks, taking turns chunk by chunk
    (who goes first rotates)."""
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


def same(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    """Per sentence: are the two engines' tokens identical?"""
    return np.array([np.array_equal(x, y) for x, y in zip(a, b, strict=True)])


def bleu(run, outputs: list[np.ndarray], references: list[str]) -> float:
    import sacrebleu

    hyps = [run.task.decode_output(o) for o in outputs]
    return sacrebleu.corpus_bleu(hyps, [references], tokenize="none").score


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", required=True, help="a run trained with --data (e.g. multi30k)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch-sizes", default="1,64", help="comma-separated chunk sizes")
    ap.add_argument("--n", type=int, default=500, help="sentences decoded at batch sizes > 1")
    ap.add_argument("--n-batch1", type=int, default=50, help="sentences decoded at batch size 1")
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--alpha", type=float, default=0.0)
    ap.add_argument("--forced", type=int, help="every row decodes exactly this many tokens (default: natural)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="intra-op threads of torch, ORT, CT2")
    ap.add_argument("--engines", default="JAX,ORT,ORT-int8,CT2,CT2-int8", help="from " + ",".join(ENGINES))
    ap.add_argument("--export-dir", help="use (or write) the ONNX export here (default: WORKDIR/bench-onnx)")
    ap.add_argument("--ct2-dir", help="use (or write) the CTranslate2 export here (default: WORKDIR/bench-ct2)")
    ap.add_argument("--data-dir")
    ap.add_argument("--manual-dir")
    return ap.parse_args(argv)


def _exports(args: argparse.Namespace, run) -> tuple[Path, Path]:
    onnx_dir = Path(args.export_dir or Path(args.workdir) / "bench-onnx")
    ct2_dir = Path(args.ct2_dir or Path(args.workdir) / "bench-ct2")
    cfg, preset = run.config.model, run.config.preset or None
    if not (onnx_dir / "model.json").is_file():
        export_model(cfg, run.params, onnx_dir, task=run.task, preset=preset, quantize="int8")
    if not (ct2_dir / "model.bin").is_file():
        export_ctranslate2(cfg, run.params, ct2_dir, task=run.task, preset=preset)
    return onnx_dir, ct2_dir


def make_decoder(engine: str, opts: DecodeOptions, translator: Translator, tokens: list[list[str]],
                 runtimes: dict, tmodel: torch.nn.Module | None, forced: int | None):
    if engine == "JAX":
        return jax_decoder(translator, opts, forced)
    if engine == "torch":
        return torch_decoder(tmodel, translator.cfg, opts, forced)
    if engine.startswith("ORT"):
        return ort_decoder(runtimes[engine], opts, forced)
    return ct2_decoder(runtimes[engine], tokens, opts, forced)


def _ratio(rate: dict[str, float], a: str, b: str) -> str:
    return f"{rate[a] / rate[b]:.2f}x" if a in rate and b in rate else "-"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        raise SystemExit(f"unknown engines {sorted(unknown)}; choose from {', '.join(ENGINES)}")
    torch.set_num_threads(args.threads)
    run = load_run(args.workdir, "best")
    cfg = run.config.model
    pairs = run.task.read_splits([args.split], data_dir=args.data_dir, manual_dir=args.manual_dir)[args.split]
    onnx_dir, ct2_dir = _exports(args, run)
    runtimes = {"ORT": OrtTranslator.load(onnx_dir, threads=args.threads),
                "ORT-int8": OrtTranslator.load(onnx_dir, threads=args.threads, int8=True),
                "CT2": CT2Translator.load(ct2_dir, compute_type="float32", threads=args.threads),
                "CT2-int8": CT2Translator.load(ct2_dir, compute_type="int8", threads=args.threads)}
    tmodel = None
    if "torch" in engines:
        tmodel = build_torch(cfg)
        tmodel.load_state_dict(flax_to_torch(cfg, run.params))
        tmodel.eval()
    print(machine_line())
    print(f"{cfg.family} hid {cfg.hid_dim} layers {cfg.n_layers} heads {cfg.n_heads} ff {cfg.ff_dim}, vocab "
          f"{cfg.src_vocab_size}/{cfg.tgt_vocab_size}; {args.split} sentences of {args.workdir}; "
          f"{args.threads} intra-op threads, affinity {sorted(os.sched_getaffinity(0))}, load "
          f"{os.getloadavg()[0]:.2f}; lengths {'forced ' + str(args.forced) if args.forced else 'natural'}")
    print()
    natural = args.forced is None
    head = ["batch", "search", "sentences", *[f"{e} tok/s" for e in engines], "ORT/CT2", "ORT-int8/ORT",
            "JAX/CT2", "JAX compile s"]
    if natural:
        head += [f"{e} = JAX" for e in engines if e != "JAX"] + [f"{e} BLEU" for e in engines]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        chosen = pairs[: args.n_batch1 if batch == 1 else args.n]
        texts, refs = [s for s, _ in chosen], [t for _, t in chosen]
        src, src_lengths = run.task.encode_inputs(texts)
        tokens = [run.task.src_tok.tokenize(t) for t in texts]
        translator = Translator(cfg, run.params, run.task, batch)
        for opts in (DecodeOptions(), DecodeOptions(beam=args.beam, alpha=args.alpha)):
            decoders = {e: make_decoder(e, opts, translator, tokens, runtimes, tmodel, args.forced) for e in engines}
            first = next(translator.chunks(src, src_lengths))
            for e in engines:
                if e != "JAX":
                    decoders[e](first)  # warm-up: first calls
            compile_s = 0.0
            if "JAX" in decoders:
                warm = time.perf_counter()
                times, _ = interleaved(translator, src, src_lengths, {"JAX": decoders["JAX"]})  # compiles
                compile_s = time.perf_counter() - warm
            times, outs = interleaved(translator, src, src_lengths, decoders)
            if "JAX" in times:
                compile_s -= times["JAX"]
            produced = {e: len(texts) * args.forced if args.forced else sum(len(o) for o in outs[e]) for e in engines}
            rate = {e: produced[e] / times[e] for e in engines}
            name = "greedy" if opts.method == "greedy" else f"beam {opts.beam}"
            row = [str(batch), name, str(len(texts)), *[f"{rate[e]:,.0f}" for e in engines],
                   _ratio(rate, "ORT", "CT2"), _ratio(rate, "ORT-int8", "ORT"), _ratio(rate, "JAX", "CT2"),
                   f"{compile_s:.1f}"]
            if natural:
                ref = outs.get("JAX")
                row += [f"{same(outs[e], ref).mean():.1%}" if ref is not None else "-" for e in engines if e != "JAX"]
                row += [f"{bleu(run, outs[e], refs):.2f}" for e in engines]
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
