"""`make demo`: train seed 002's GRU addition model and print its predictions, seed-style.

Trains the `addition-gru` preset on 2-digit addition (9,000 training problems,
1,000 held out), saves the run in a workdir, then prints a table of held-out
predictions and the held-out exact match. One override of the preset:
`reverse_source=True` (Sutskever et al.'s trick: the encoder reads `}53+21`,
so the units digits it needs first for the carry are the most recent in its
state). Without it the seed's model needs several times more steps and still
lands at 93-99% depending on the seed; with it 2,000 steps reach >= 99.9%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence

import numpy as np

from s2s_jax.data.addition import AdditionTask
from s2s_jax.run.config import DecodeOptions, OptimizerConfig, TrainConfig
from s2s_jax.run.train import config_for_task, decode_heldout, train

DEMO_OVERRIDES = {"reverse_source": True}
DEMO_TRAINING = TrainConfig(steps=3000, batch_size=128, eval_every=1000, log_every=500)
DEMO_OPTIMIZER = OptimizerConfig(lr=3e-3, schedule="cosine")


def prediction_table(task: AdditionTask, batch: dict[str, np.ndarray], tokens: np.ndarray, rows: Sequence[int]) -> str:
    lines = []
    for i in rows:
        problem = task.decode_input(batch["src"][i])
        truth = task.decode_output(batch["tgt_out"][i])
        pred = task.decode_output(tokens[i])
        mark = "✅ correct" if pred == truth else "❌ wrong"
        lines.append(f"input: {problem:<{2 * task.digits + 1}} | truth: {truth:<{task.digits + 1}} | "
                     f"predicted: {pred:<{task.digits + 1}} | result: {mark}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="where to save the run (default: a temporary directory)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=DEMO_TRAINING.steps)
    parser.add_argument("--rows", type=int, default=12, help="how many held-out predictions to print")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="s2s-demo-") as tmp:
        workdir = args.workdir or f"{tmp}/run"
        task = AdditionTask(digits=2, seed=args.seed, n_heldout=1000)
        cfg = config_for_task("addition-gru", task, DEMO_OVERRIDES)
        tc = TrainConfig(**{**DEMO_TRAINING.to_dict(), "seed": args.seed, "steps": args.steps})
        start = time.perf_counter()
        result = train(cfg, task, tc, workdir=workdir, optimizer=DEMO_OPTIMIZER, preset="addition-gru")
        elapsed = time.perf_counter() - start

        heldout = task.heldout_batch()
        tokens, hits = decode_heldout(cfg, result.state.params, task, DecodeOptions(), tc.eval_chunk)
        em = float(hits.mean())
        wrong = list(np.flatnonzero(~hits)[: args.rows // 3])
        rows = wrong + [i for i in range(len(hits)) if hits[i]][: args.rows - len(wrong)]
        print("\n--- held-out predictions ---")
        print(prediction_table(task, heldout, tokens, sorted(rows)))
        print(f"held-out exact match {em:.2%} ({int(hits.sum())}/{len(hits)}), "
              f"training + evaluation + checkpoint took {elapsed:.0f}s")
    return 0 if em >= 0.99 else 1


if __name__ == "__main__":
    sys.exit(main())
