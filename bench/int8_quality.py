"""What int8 dynamic quantization costs: model size and held-out exact match or BLEU, ORT fp32 vs int8.

    python bench/int8_quality.py [--preset bentrevett-lstm] [--steps 3000]
    python bench/int8_quality.py --workdir runs/quality/core0/bentrevett-transformer [--beam 5]

Without --workdir: trains a small LSTM seq2seq on 2-digit addition through the CLI
(LSTMs are what onnxruntime quantizes; it has no int8 GRU kernel), exports it with
`--quantize int8`, and translates the 1,000 held-out problems with the
onnxruntime-only `Translator` in both precisions. With --workdir (a model trained on
a dataset, e.g. Multi30k): exports its best checkpoint and scores both precisions'
translations of the test split with sacreBLEU, as `s2s-jax evaluate` does. Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path

from export.runtime import Translator
from s2s_jax.cli import main as cli
from s2s_jax.data.addition import AdditionTask


def sizes(out: Path) -> tuple[int, int]:
    fp32 = sum(p.stat().st_size for p in out.glob("*.onnx") if not p.name.endswith(".int8.onnx"))
    int8 = sum(p.stat().st_size for p in out.glob("*.int8.onnx"))
    return fp32, int8


def workdir_table(args: argparse.Namespace) -> None:
    """fp32 vs int8 BLEU of a trained workdir's export on its dataset's test split."""
    from s2s_jax.run.evaluate import corpus_scores
    from s2s_jax.run.workdir import load_run

    run = load_run(args.workdir, "best")
    pairs = run.task.read_splits([args.split])[args.split]
    sources, refs = [s for s, _ in pairs], [t for _, t in pairs]
    with tempfile.TemporaryDirectory(prefix="s2s-int8-") as tmp:
        out = Path(tmp)
        assert cli(["export", "--workdir", args.workdir, "--out", str(out), "--quantize", "int8",
                    "--checkpoint", str(run.step)]) == 0
        fp32_size, int8_size = sizes(out)
        rows = []
        for name, int8 in (("ORT fp32", False), ("ORT int8", True)):
            start = time.perf_counter()
            hyps = Translator.load(out, int8=int8).translate(sources, beam=args.beam)
            secs = time.perf_counter() - start
            bleu = corpus_scores(hyps, refs, pretokenized=run.task.pretokenized)["bleu"]
            rows.append((name, int8_size if int8 else fp32_size, bleu, secs))
    print(f"# {datetime.date.today()}, {platform.machine()}; {args.workdir} (step {run.step}, "
          f"{run.config.model.family}); "
          f"{args.split}, {len(pairs)} sentences, beam {args.beam}; command: python bench/int8_quality.py "
          f"--workdir {args.workdir} --beam {args.beam}")
    print(f"| graphs | size (MB) | size / fp32 | {args.split} BLEU | translate time (s) |")
    print("|---|---|---|---|---|")
    for name, size, bleu, secs in rows:
        print(f"| {name} | {size / 2**20:.1f} | {size / fp32_size:.2f} | {bleu:.2f} | {secs:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="bentrevett-lstm")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", help="a trained workdir with dataset splits: BLEU instead of addition")
    p.add_argument("--split", default="test")
    p.add_argument("--beam", type=int, default=5)
    args = p.parse_args()
    if args.workdir:
        workdir_table(args)
        return
    with tempfile.TemporaryDirectory(prefix="s2s-int8-") as tmp:
        run, out = Path(tmp) / "run", Path(tmp) / "onnx"
        train = ["train", "--preset", args.preset, "--task", "addition", "--digits", "2", "--workdir", str(run),
                 "--steps", str(args.steps), "--batch-size", "128", "--lr", "3e-3", "--seed", str(args.seed),
                 "--eval-every", str(args.steps), "--no-progress", "--set", "emb_dim=64", "--set", "hid_dim=128",
                 "--set", "dropout=0.0", "--set", "reverse_source=true"]
        assert cli(train) == 0
        assert cli(["export", "--workdir", str(run), "--out", str(out), "--quantize", "int8"]) == 0
        task = AdditionTask(digits=2, seed=args.seed, n_heldout=1000)
        held = task.heldout_batch()
        problems = [task.decode_input(row) for row in held["src"]]
        truths = [task.decode_output(row) for row in held["tgt_out"]]
        fp32_size, int8_size = sizes(out)
        rows = []
        for name, int8 in (("ORT fp32", False), ("ORT int8", True)):
            translator = Translator.load(out, int8=int8)
            start = time.perf_counter()
            preds = translator.translate(problems)
            secs = time.perf_counter() - start
            exact = sum(p == t for p, t in zip(preds, truths, strict=True)) / len(truths)
            rows.append((name, int8_size if int8 else fp32_size, exact, secs))
    print(f"# {datetime.date.today()}, {platform.machine()}; {args.preset} emb 64 hid 128, 2-digit addition, "
          f"{args.steps} steps; command: python bench/int8_quality.py --preset {args.preset} --steps {args.steps}")
    print("| graphs | size (KB) | size / fp32 | held-out exact match (1,000) | translate time (s) |")
    print("|---|---|---|---|---|")
    for name, size, exact, secs in rows:
        print(f"| {name} | {size / 1024:.0f} | {size / fp32_size:.2f} | {exact:.1%} | {secs:.2f} |")


if __name__ == "__main__":
    main()
