"""`python -m export.runtime`: the onnxruntime-only translator's command line, with `s2s-jax translate`'s input rules.

    python -m export.runtime OUT "ein hund läuft ." [--beam 5 --alpha 0.6 --n-best 2]
    python -m export.runtime OUT --input FILE [--batch-size 64] [--threads 1]
    python -m export.runtime OUT --input FILE --no-repeat-ngram 3 --prefix-file P --print-scores --format jsonl
    python -m export.runtime OUT --sample --temperature 0.8 --top-p 0.9 --seed 1 "ein hund ."
    python -m export.runtime OUT --ensemble OUT2 "ein hund ."      (exports of the same vocabularies)
    cat FILE | python -m export.runtime OUT

Inputs as `translate` takes them: arguments, or `--input FILE` (UTF-8, one sentence a line; an empty line or
bytes that are not UTF-8 are an error naming the line), or else stdin lines as they arrive (blank ones skipped),
never both arguments and --input. Each bad input (a damaged export, a bad flag value, an unknown symbol, ...) is
one line on stderr and exit code 2, never a traceback: deployment scripts read the line, not a stack. The file
rules repeat s2s_jax/data/textfiles.py's `read_lines` and the stdin batching `s2s_jax/cli/translate.py`'s,
because this runtime may not import s2s_jax; tests/export/test_runtime_cli.py holds them to the same behaviour.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path
from typing import Any, NoReturn

from export.lines import answer_line, one_line, paired_prefixes, split_prefixes, stdin_batches
from export.ort_step import OPTIMIZATION
from export.text import TranslationError

PROG = "python -m export.runtime"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other bad input here."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {one_line(message)} (see --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog=PROG, description="Translate with an ONNX export (numpy + onnxruntime only).")
    p.add_argument("out", help="export directory (model.json and the .onnx graphs)")
    p.add_argument("texts", nargs="*", help="inputs to translate (default: --input FILE, else stdin lines)")
    p.add_argument("--input", metavar="FILE", help="translate each line of FILE (UTF-8)")
    p.add_argument("--beam", type=_positive, default=1, help="beam size (1: greedy)")
    p.add_argument("--alpha", type=float, default=0.0, help="length penalty exponent")
    p.add_argument("--n-best", type=_positive, default=1, help="hypotheses per input, tab-separated (<= beam)")
    p.add_argument("--max-len", type=_positive, default=None, help="most tokens to generate (default: model.json)")
    p.add_argument("--batch-size", type=_positive, default=64, help="sentences decoded together")
    p.add_argument("--threads", type=_positive, default=None, help="onnxruntime intra-op threads (default: cores)")
    p.add_argument("--graph-optimization", choices=tuple(OPTIMIZATION), default="all",
                   help="onnxruntime graph optimization level")
    p.add_argument("--int8", action="store_true", help="use the int8 graphs of `--quantize int8`")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="jsonl: one JSON object per input: input, hypotheses [{text, score}] (as s2s-jax translate)")
    p.add_argument("--print-scores", action="store_true",
                   help="with each hypothesis, its tokens and their log-probs (jsonl: tokens, token_scores; text: "
                        "score<TAB>text)")
    p.add_argument("--no-repeat-ngram", type=_positive, default=0, metavar="N",
                   help="never repeat an N-gram within an output")
    p.add_argument("--prefix-file", metavar="FILE",
                   help="force each output to start with the target text on the same line of FILE (one line per "
                        "input; an empty line: no prefix); or give INPUT<TAB>PREFIX lines")
    p.add_argument("--sample", action="store_true", help="sample instead of searching (beam 1)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (> 0)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample within the nucleus of probability P (1: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (a sentence's draws follow the seed and "
                                                         "the sentence)")
    p.add_argument("--ensemble", action="append", default=[], metavar="OUT",
                   help="decode with this export too (repeatable; same vocabularies and tokenizer), the models' "
                        "probabilities averaged each step")
    return p.parse_intermixed_args(argv)  # OUT --beam 5 "text": inputs may follow the flags


def read_lines(path: str, allow_empty: bool = False) -> list[str]:
    """The lines of a UTF-8 file (gzip-compressed or not); a missing file, non-UTF-8 bytes or (unless
    `allow_empty`) an empty line is a TranslationError naming the file and line."""
    try:
        raw = Path(path).read_bytes()
        if raw.startswith(b"\x1f\x8b"):  # gzip, told by its magic bytes as `translate` tells it
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise TranslationError(f"{path}: no such file") from None
    except (OSError, EOFError) as e:
        raise TranslationError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise TranslationError(f"{path}:{number}: not UTF-8 (byte {chunk[e.start]:#04x} at column "
                                   f"{e.start + 1}); convert the file to UTF-8, e.g. with iconv") from None
        if not line.strip() and not allow_empty:
            raise TranslationError(f"{path}:{number}: empty line; every line must hold a sentence (remove the "
                                   "line or give it some text)")
        lines.append(line)
    if not lines and not allow_empty:
        raise TranslationError(f"{path}: no lines to translate")
    return lines


def _print(translator: Any, texts: list[str], options: dict[str, Any], args: argparse.Namespace,
           prefixes: list[str] | None = None) -> None:
    """One line per input (export/lines.py's `answer_line`, as `s2s-jax translate` prints them): the best text,
    the n best tab-separated, or JSON with scores (`--format jsonl`)."""
    if prefixes is None:
        texts, prefixes = split_prefixes(texts)
    for text, hyps in zip(texts, translator.details(texts, prefixes=prefixes, **options), strict=True):
        print(answer_line(text, hyps, args.format, scores=args.print_scores))
    sys.stdout.flush()


def _check(args: argparse.Namespace) -> None:
    """Flag values that are wrong whatever the input, refused before anything is loaded."""
    if args.n_best > args.beam:
        raise TranslationError(f"--n-best {args.n_best} must be <= --beam {args.beam}")
    if args.sample and args.beam > 1:
        raise TranslationError(f"--sample takes one hypothesis; give --beam 1, not {args.beam}")
    if not (args.temperature > 0 and args.temperature < float("inf")):
        raise TranslationError(f"--temperature {args.temperature} must be a finite number > 0")
    if args.top_k < 0:
        raise TranslationError(f"--top-k {args.top_k} must be >= 0 (0: every token)")
    if not 0 < args.top_p <= 1:
        raise TranslationError(f"--top-p {args.top_p} must be in (0, 1] (1: every token)")
    if not -2**31 <= args.seed < 2**63:
        raise TranslationError(f"--seed {args.seed} is out of range")
    if args.prefix_file and not (args.texts or args.input):
        raise TranslationError("--prefix-file pairs its lines with --input FILE or arguments; on stdin give "
                               "INPUT<TAB>PREFIX lines")


def run(args: argparse.Namespace) -> int:
    from export.runtime import Translator

    if args.texts and args.input:
        raise TranslationError(f"give inputs as arguments or as --input {args.input}, not both")
    _check(args)
    texts = list(args.texts) if args.texts else read_lines(args.input) if args.input else None
    prefixes = None
    if args.prefix_file:
        try:
            prefixes = paired_prefixes(args.prefix_file, read_lines(args.prefix_file, allow_empty=True), len(texts))
        except ValueError as e:
            raise TranslationError(str(e)) from None
    translator = Translator.load(args.out, int8=args.int8, threads=args.threads,
                                 optimization=args.graph_optimization, ensemble=args.ensemble)
    options = dict(beam=args.beam, max_len=args.max_len, alpha=args.alpha, batch_size=args.batch_size,
                   n_best=args.n_best, no_repeat_ngram=args.no_repeat_ngram, sample=args.sample,
                   temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    if texts is not None:
        _print(translator, texts, options, args, prefixes)
        return 0
    answered = 0
    for batch in stdin_batches(sys.stdin, args.batch_size):
        _print(translator, batch, options, args)
        answered += len(batch)
    if not answered:
        raise TranslationError("nothing to translate: give inputs as arguments, --input FILE, or lines on stdin")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except TranslationError as e:
        print(f"{PROG}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
