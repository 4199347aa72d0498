"""Training time per target token: `--max-tokens` batches against sentence batches of the same mean size, side
by side in one process (runs alternate A B A B, so drift on a shared machine hits both).

    .venv/bin/python bench/token_batches.py --manual-dir ../shared/data/multi30k --max-tokens 4000 --steps 60

Prints target tokens/s of each run after its first `--skip` logged steps (compilation), and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from s2s_jax.data.translation import TranslationTask
from s2s_jax.run.train import define_run, train_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manual-dir", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--preset", default="marian")
    ap.add_argument("--recipe", default="multi30k-tiny")
    ap.add_argument("--max-tokens", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--skip", type=int, default=20, help="logged steps left out (compiling one shape per bucket)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    task = TranslationTask.create("multi30k:de-en:tok", data_dir=args.data_dir, manual_dir=args.manual_dir,
                                  tokenizer="spm", spm_vocab_size=10000, log=lambda line: None)
    lengths = [len(t) + 1 for t in task._train[1]]
    rows = max(1, round(args.max_tokens / (np.mean([max(len(s), n) for s, n in zip(task._train[0], lengths,
                                                                                    strict=True)]) * 1.35)))
    settings = {"tokens": {"max_tokens": args.max_tokens}, "sentences": {"batch_size": rows, "max_tokens": 0}}
    rates: dict[str, list[float]] = {k: [] for k in settings}
    for r in range(args.rounds):
        for name, flags in settings.items():
            run, _ = define_run(args.preset, task, recipe=args.recipe,
                                flags={"training": {"steps": args.steps, "log_every": 1, "eval_every": 0,
                                                    "checkpoint_every": 0, **flags}})
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                result = train_run(run, task, Path(tmp) / "w", log=lambda line: None)
                records = result.train_log[args.skip:]
                seconds = sum(1.0 / rec["steps_per_s"] for rec in records)
                rates[name].append(sum(rec["tokens"] for rec in records) / seconds)
                print(f"round {r} {name:9s} ({flags}): {rates[name][-1]:8,.0f} target tokens/s "
                      f"({time.perf_counter() - start:.0f} s with compilation)", flush=True)
    tok, sent = np.median(rates["tokens"]), np.median(rates["sentences"])
    print(f"median: --max-tokens {args.max_tokens}: {tok:,.0f} tokens/s; --batch-size {rows}: {sent:,.0f} tokens/s; "
          f"ratio {tok / sent:.2f}x")


if __name__ == "__main__":
    main()
