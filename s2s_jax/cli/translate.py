"""`s2s-jax translate` and `s2s-jax evaluate`: a workdir's run, its decoding section, the flags over it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from s2s_jax.errors import UserError


def decode_options(args: argparse.Namespace, defaults: Any) -> Any:
    """The run's decoding section (`defaults`) with the decoding flags that were given on top. `--sample` means
    one hypothesis (beam 1) unless --beam is given too, which is then an error; `--beam` alone turns sampling off."""
    values = {"beam": args.beam, "alpha": args.alpha, "temperature": args.temperature, "top_k": args.top_k,
              "top_p": args.top_p, "seed": args.seed, "no_repeat_ngram": args.no_repeat_ngram}
    if args.sample:
        values.update(sample=True, beam=1 if args.beam is None else args.beam)
    elif args.beam is not None:
        values["sample"] = False
    return defaults.replace(**values)


def _read_inputs(args: argparse.Namespace) -> list[str] | None:
    """The inputs of the arguments or of --input FILE; None: read stdin as a stream."""
    if args.inputs and args.input:
        raise UserError(f"give inputs as arguments or as --input {args.input}, not both")
    if args.inputs:
        return list(args.inputs)
    if args.input:
        from s2s_jax.data.textfiles import read_lines

        # one sentence per line; empty lines and non-UTF-8 are errors
        return read_lines(args.input, empty_fix="remove the line or give it some text")
    return None


def _print_answers(translator: Any, texts: list[str], opts: Any, args: argparse.Namespace,
                   prefixes: list[str] | None = None) -> None:
    """One line per input (export/lines.py's `answer_line`, as the ONNX runtime prints them): plain text (the
    best, or the n best tab-separated) or JSON lines with scores, tokens' scores and alignments if asked for."""
    from export.lines import answer_line, split_prefixes  # standard library only

    if prefixes is None:
        texts, prefixes = split_prefixes(texts)
    align = args.print_alignment
    hyps = translator.details(texts, opts, args.n_best, prefixes, align=align, replace_unk=args.replace_unk)
    for text, row in zip(texts, hyps, strict=True):
        print(answer_line(text, [h._asdict() for h in row], args.format, scores=args.print_scores, alignment=align))


def _print_stream(translator: Any, opts: Any, args: argparse.Namespace) -> int:
    """Translate stdin as it arrives, one answer per non-blank line (blank lines are skipped)."""
    from export.lines import stdin_batches  # standard library only; the runtime's CLI streams the same way

    if args.prefix_file:
        raise UserError("--prefix-file pairs its lines with --input FILE or arguments; on stdin give "
                        "INPUT<TAB>PREFIX lines")
    answered = 0
    for texts in stdin_batches(sys.stdin, args.batch_size):  # stripped, blank lines skipped
        _print_answers(translator, texts, opts, args)
        sys.stdout.flush()
        answered += len(texts)
    if not answered:
        raise UserError("nothing to translate: give inputs as arguments, --input FILE, or lines on stdin")
    return 0


def make_translator(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(run, its decoding options with the flags over them, its Translator with the --ensemble runs), all
    checked before any input is read."""
    from s2s_jax.run.translate import Translator, ensemble_members
    from s2s_jax.run.workdir import load_run

    run = load_run(args.workdir, args.checkpoint)
    others = [load_run(w, args.checkpoint) for w in args.ensemble]
    opts = decode_options(args, run.config.decoding)
    translator = Translator(run.config.model, run.params, run.task, args.batch_size,
                            ensemble=ensemble_members([run, *others]))
    translator.check(opts)
    return run, opts, translator


def cmd_translate(args: argparse.Namespace) -> int:
    run, opts, translator = make_translator(args)
    if not 1 <= args.n_best <= opts.beam:
        raise UserError(f"--n-best {args.n_best} must be between 1 and the beam ({opts.beam}; give --beam)")
    if args.print_alignment or args.replace_unk:
        from s2s_jax.decoding.attention_weights import check_has_attention

        check_has_attention(run.config.model)
    if args.plot_attention:
        return _translate_and_plot(args, run, translator, opts)
    texts = _read_inputs(args)
    if texts is None:
        return _print_stream(translator, opts, args)
    prefixes = None
    if args.prefix_file:
        from export.lines import paired_prefixes  # standard library only
        from s2s_jax.data.textfiles import read_lines

        try:
            prefixes = paired_prefixes(args.prefix_file, read_lines(args.prefix_file, allow_empty=True), len(texts))
        except ValueError as e:
            raise UserError(str(e)) from None
    _print_answers(translator, texts, opts, args, prefixes)
    return 0


def _translate_and_plot(args: argparse.Namespace, run: Any, translator: Any, opts: Any) -> int:
    """One input translated as plain `translate` does (same Translator, so the same length bound and position
    check), then its attention drawn."""
    from s2s_jax.decoding.attention_weights import check_has_attention

    check_has_attention(run.config.model)  # before reading stdin or decoding anything
    if opts.method != "greedy":
        raise UserError("--plot-attention draws a greedy decoding's attention; give --beam 1 and no --sample")
    texts = _read_inputs(args)
    if texts is None:
        texts = [line.strip() for line in sys.stdin if line.strip()]
    if len(texts) != 1:
        if not texts:
            raise UserError("nothing to translate: --plot-attention needs exactly one input")
        raise UserError(f"--plot-attention draws one sentence's attention; got {len(texts)} inputs, give exactly one")
    src, src_lengths = run.task.encode_inputs(texts)  # validates the input before any decoding
    ids, _ = translator.decode_ids(src, src_lengths, opts)  # what plain `translate` prints, bound included
    src = src[:, : int(src_lengths[0])]  # one sentence needs no padding (which may pass the model's positions)
    print(run.task.decode_output(ids[0]))
    _plot_attention(run, src, src_lengths, ids[0], args.plot_attention)
    return 0


def _plot_attention(run: Any, src: Any, src_lengths: Any, output: Any, path: str) -> None:
    """Heatmap of the one decoded sentence's attention: output tokens (through eos) down, source tokens across."""
    import numpy as np

    from s2s_jax.decoding.attention_weights import make_attention_weights
    from s2s_jax.models import build_model
    from s2s_jax.plot import plot_attention

    length = int(src_lengths[0])
    tokens = np.asarray(output, np.int32)[None, :]
    weights = make_attention_weights(build_model(run.config.model))(run.params, src[:1], src_lengths[:1], tokens)
    src_tokens = [run.task.src_vocab.tokens[i] for i in np.asarray(src)[0, :length]]
    out_tokens = [run.task.tgt_vocab.tokens[i] for i in tokens[0]]
    written = plot_attention(np.asarray(weights)[0], src_tokens, out_tokens, path)
    print(f"attention plot written to {written}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Translate a dataset split (or a pair of plain files), write hypotheses and a JSON of BLEU/chrF scores."""
    from s2s_jax.run.evaluate import evaluate_pairs, evaluate_split, read_file_pair
    from s2s_jax.run.workdir import load_run

    if bool(args.src) != bool(args.ref):
        raise UserError("--src and --ref go together: the source file and its reference translations")
    if args.src and args.split is not None:
        raise UserError(f"give --split {args.split} or --src/--ref files, not both")
    if args.src:
        name, pairs = read_file_pair(args.src, args.ref)  # before the model is loaded: bad files fail fast
    run = load_run(args.workdir, args.checkpoint)
    others = [load_run(w, args.checkpoint) for w in args.ensemble]
    out = args.out or str(Path(args.workdir) / "eval")
    opts = decode_options(args, run.config.decoding)
    common = dict(batch_size=args.batch_size, limit=args.limit, progress=True, ensemble=others)
    if args.src:
        result = evaluate_pairs(run, name, pairs, opts, out, data=f"{args.src},{args.ref}", **common)
    else:
        result = evaluate_split(run, args.split or "test", opts, out, data_dir=args.data_dir,
                                manual_dir=args.manual_dir, **common)
    print(json.dumps({k: result[k] for k in ("split", "step", "sentences", "bleu", "chrf", "decoding", "hypotheses")}))
    return 0
