"""Two ONNX exports of one model, A/B in one process: target tokens/s of each, and whether their tokens agree.

    python bench/export_ab.py DIR_A DIR_B [--batch 64] [--beam 5] [--sentences 8] [--forced 14] [--threads 1]

Why: the same `bench/decode.py` command varies by about +-0.05 on a ratio between runs on this shared
machine, more than most single changes to a graph gain. Here both exports (say, format 3 and format 4 of one
checkpoint) decode the same sources taking turns sentence batch by sentence batch (who goes first alternates),
in one process, so drift falls on both alike. Sources are random ids of 8 to 19 tokens (the speed of a forced
length does not depend on the words); every row decodes exactly `--forced` tokens, as `bench/decode.py
--forced` (`decode_engines.ort_forced`). This is a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode_engines import ort_forced  # noqa: E402

from export.runtime import Translator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--sentences", type=int, default=8, help="batches decoded by each export")
    ap.add_argument("--forced", type=int, default=14)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    exports = {name: Translator.load(name, threads=args.threads) for name in (args.a, args.b)}
    vocab = int(exports[args.a].manifest["config"]["src_vocab_size"])
    rng = np.random.default_rng(0)
    sources = [rng.integers(4, vocab, (args.batch, n)) for n in rng.integers(8, 20, args.sentences)]
    seconds = dict.fromkeys(exports, 0.0)
    tokens: dict[str, list[np.ndarray]] = {name: [] for name in exports}
    names = list(exports)
    for i, src in enumerate(sources):
        for name in names[i % 2:] + names[: i % 2]:
            start = time.perf_counter()
            result = ort_forced(exports[name], src, np.full(len(src), src.shape[1]), beam=args.beam,
                                forced=args.forced)
            tokens[name].append(np.asarray(result.tokens))
            seconds[name] += time.perf_counter() - start
    count = args.batch * args.forced * len(sources)
    same = all(np.array_equal(x, y) for x, y in zip(tokens[args.a], tokens[args.b], strict=True))
    for name in names:
        print(f"{name}: {count / seconds[name]:,.0f} target tokens/s")
    print(f"B / A: {seconds[args.a] / seconds[args.b]:.3f}x the speed; same tokens: {same} "
          f"(batch {args.batch}, beam {args.beam}, {len(sources)} batches, {args.forced} tokens forced)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
