"""BLEU of an ensemble and of n-gram blocking on Multi30k: the decoding options of issue 19, measured.

    python bench/decoding_options.py RUN_A RUN_B [--ngrams 2,3,4] [--beam 5] [--checkpoint latest]

RUN_A and RUN_B are two workdirs trained alike with different seeds (for instance `s2s-jax train
--preset bentrevett-transformer --data multi30k:de-en:tok --steps 800 --seed 1` and `--seed 2`). For each
of A, B and the ensemble A+B (`--ensemble`, their probabilities averaged each step) this scores beam
search on the validation split with each `--no-repeat-ngram N` (0: none), picks N by validation BLEU,
and only then decodes test_2016 with that N and without blocking: nothing is chosen on the test set.
Every decoding is `s2s_jax.run.evaluate.evaluate_split`, what `s2s-jax evaluate` runs (sacreBLEU,
tokenize none on the tokenized text). Prints one markdown table; the hypotheses and JSON of each
decoding go to `--out` (default RUN_A/eval_options).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cli_runs import machine  # noqa: E402
from s2s_jax.run.config import DecodeOptions  # noqa: E402
from s2s_jax.run.evaluate import evaluate_split  # noqa: E402
from s2s_jax.run.workdir import load_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs=2, help="two workdirs of the same data and vocabulary")
    p.add_argument("--ngrams", default="2,3,4", help="no-repeat n-gram sizes to try on validation")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--checkpoint", default="latest")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", help="where evaluate's files go (default RUN_A/eval_options)")
    args = p.parse_args(argv)
    runs = [load_run(path, args.checkpoint) for path in args.runs]
    out = Path(args.out or Path(args.runs[0]) / "eval_options")
    sizes = [0, *(int(n) for n in args.ngrams.split(","))]
    systems = {"A": (runs[0], ()), "B": (runs[1], ()), "A+B": (runs[0], (runs[1],))}
    print(machine())
    rows = []
    for name, (run, ensemble) in systems.items():
        bleu = {}
        for n in sizes:
            opts = DecodeOptions(beam=args.beam, no_repeat_ngram=n)
            bleu[n] = evaluate_split(run, "validation", opts, out / name, batch_size=args.batch_size,
                                     ensemble=ensemble, log=lambda line: None)["bleu"]
        chosen = max(sizes[1:], key=lambda n: (bleu[n], -n))
        test = {n: evaluate_split(run, "test", DecodeOptions(beam=args.beam, no_repeat_ngram=n), out / name,
                                  batch_size=args.batch_size, ensemble=ensemble, log=lambda line: None)
                for n in (0, chosen)}
        rows.append((name, bleu, chosen, test))
        print(f"{name}: validation {bleu}, chosen N={chosen}, test {test[0]['bleu']} / {test[chosen]['bleu']}",
              flush=True)
    header = " | ".join(f"val N={n}" for n in sizes)
    print(f"\n| system | {header} | N chosen on val | test_2016 BLEU | test_2016 BLEU, N chosen | test chrF |")
    print("|---|" + "---|" * (len(sizes) + 4))
    for name, bleu, chosen, test in rows:
        vals = " | ".join(f"{bleu[n]:.2f}" for n in sizes)
        print(f"| {name} | {vals} | {chosen} | {test[0]['bleu']:.2f} | {test[chosen]['bleu']:.2f} | "
              f"{test[0]['chrf']:.2f} |")
    print(f"\nbeam {args.beam}, checkpoint {args.checkpoint}; runs: A={args.runs[0]}, B={args.runs[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
