"""`s2s-jax` command line: thin argparse verbs over the training, decoding and workdir modules.

Bad input (unknown preset or config key, missing workdir, malformed text) is a
one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from s2s_jax import presets
from s2s_jax.config import ConfigError
from s2s_jax.errors import UserError
from s2s_jax.train_args import add_run_args, schedule_choices
from s2s_jax.training.config import model_overrides

USAGE_ERROR = 2


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["hid_dim=64", "cell=lstm"] -> {"hid_dim": 64, "cell": "lstm"}, typed by ModelConfig's fields."""
    texts: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        texts[key] = text
    return model_overrides(texts)


def cmd_presets(args: argparse.Namespace) -> int:
    width = max(map(len, presets.names())) + 2
    for name in presets.names():
        p = presets.PRESETS[name]
        info = ", ".join(f"{k}={p[k]}" for k in ("family", "cell", "emb_dim", "hid_dim", "n_layers") if k in p)
        print(f"{name:<{width}} {info}")
    return 0


def _make_task(args: argparse.Namespace) -> Any:
    """`--data SPEC`: a translation task read from a dataset; otherwise the synthetic `--task`."""
    from s2s_jax.data.tasks import build_task

    if not args.data:
        return build_task(args.task, digits=args.digits, seed=args.seed)
    from s2s_jax.data.translation import TranslationTask

    min_freq = args.min_freq if args.min_freq is not None else (2 if args.tokenizer in ("word", "space") else 1)
    return TranslationTask.create(
        args.data, data_dir=args.data_dir, manual_dir=args.manual_dir, tokenizer=args.tokenizer,
        lowercase=args.lowercase, regex=args.word_regex, spm_vocab_size=args.spm_vocab_size,
        spm_joint=not args.spm_separate, min_freq=min_freq, max_vocab=args.max_vocab, max_len=args.max_len,
        seed=args.seed, **({"buckets": _int_list(args.buckets)} if args.buckets else {}),
    )


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    """A new run (with --preset), or the run in --workdir resumed; see `s2s_jax.train_args`."""
    from s2s_jax.train_args import maybe_init_distributed, run_from_args

    maybe_init_distributed(args)  # before anything touches a device
    from s2s_jax.training.loop import train_run

    defaults = build_parser().parse_args(["train", "--workdir", args.workdir])
    run, task = run_from_args(args, _make_task, defaults)
    result = train_run(run, task, workdir=args.workdir, progress=args.progress)
    steps = int(result.state.step)
    print(f"held-out exact match {result.exact_match:.2%} after {steps} steps ({result.seconds:.0f}s)")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from s2s_jax.plot_curves import plot_curves

    print(plot_curves(args.workdir, args.out))
    return 0


def _read_inputs(args: argparse.Namespace) -> list[str]:
    if args.inputs:
        return list(args.inputs)
    if getattr(args, "input", None):
        from s2s_jax.data.textfiles import read_lines

        return read_lines(args.input)  # one sentence per line; empty lines and non-UTF-8 are errors
    lines = [line.strip() for line in sys.stdin]
    return [line for line in lines if line]


def cmd_translate(args: argparse.Namespace) -> int:
    import numpy as np

    from s2s_jax.decoding.greedy import make_greedy_decoder
    from s2s_jax.models import build_model
    from s2s_jax.workdir import load_run

    run = load_run(args.workdir, args.checkpoint)
    if args.plot_attention:
        from s2s_jax.decoding.attention_weights import check_has_attention

        check_has_attention(run.cfg)  # before reading stdin or decoding anything
    texts = _read_inputs(args)
    if not texts:
        raise UserError("nothing to translate: give inputs as arguments or on stdin, one per line")
    if args.plot_attention and len(texts) != 1:
        raise UserError(f"--plot-attention draws one sentence's attention; got {len(texts)} inputs, give exactly one")
    if args.plot_attention and (getattr(args, "beam", 0) or getattr(args, "sample", False)):
        raise UserError("--plot-attention decodes greedily; drop --beam / --sample")
    if not args.plot_attention:
        return _translate_batched(run, texts, args)
    src, src_lengths = run.task.encode_inputs(texts)  # validates every input before any decoding
    model = build_model(run.cfg)
    decoder = make_greedy_decoder(model, run.task.max_decode_len)
    tokens, lengths = decoder(run.params, src, src_lengths)
    for row in np.asarray(tokens):
        print(run.task.decode_output(row))
    _plot_attention(run, model, src, src_lengths, tokens, lengths, args.plot_attention)
    return 0


def _plot_attention(run: Any, model: Any, src: Any, src_lengths: Any, tokens: Any, lengths: Any, path: str) -> None:
    """Heatmap of the one decoded sentence's attention: output tokens (through eos) down, source tokens across."""
    import numpy as np

    from s2s_jax.decoding.attention_weights import make_attention_weights
    from s2s_jax.plot import plot_attention

    weights = np.asarray(make_attention_weights(model)(run.params, src, src_lengths, tokens))[0]
    src_tokens = [run.task.src_vocab.tokens[i] for i in np.asarray(src)[0, : int(src_lengths[0])]]
    out_tokens = [run.task.tgt_vocab.tokens[i] for i in np.asarray(tokens)[0, : int(lengths[0])]]
    written = plot_attention(weights, src_tokens, out_tokens, path)
    print(f"attention plot written to {written}", file=sys.stderr)


def _decode_options(args: argparse.Namespace) -> Any:
    from s2s_jax.run.translate import DecodeOptions

    if args.sample and args.beam:
        raise UserError("choose --beam K or --sample, not both")
    method = "sample" if args.sample else "beam" if args.beam else "greedy"
    return DecodeOptions(method=method, beam=args.beam or 1, alpha=args.alpha, temperature=args.temperature,
                         top_k=args.top_k, seed=args.seed)


def _translate_batched(run: Any, texts: list[str], args: argparse.Namespace) -> int:
    """Greedy, beam or sampled translations of `texts`, in chunks of --batch-size, one output line per input."""
    from s2s_jax.run.translate import Translator

    opts = _decode_options(args)
    for line in Translator(run.cfg, run.params, run.task, args.batch_size).translate(texts, opts):
        print(line)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Translate a dataset split, write hypotheses and a JSON of BLEU/chrF scores."""
    from pathlib import Path

    from s2s_jax.evaluation import evaluate_split
    from s2s_jax.workdir import load_run

    run = load_run(args.workdir, args.checkpoint)
    out = args.out or str(Path(args.workdir) / "eval")
    result = evaluate_split(run, args.split, _decode_options(args), out, batch_size=args.batch_size, limit=args.limit,
                            data_dir=args.data_dir, manual_dir=args.manual_dir)
    print(json.dumps({k: result[k] for k in ("split", "step", "sentences", "bleu", "chrf", "decoding", "hypotheses")}))
    return 0


def _checkpoint_choice(text: str) -> str | int:
    """`--checkpoint`: "best", "latest" or a step number."""
    if text in ("best", "latest"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not best, latest or a step number") from None


def _add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=_checkpoint_choice, default="best", metavar="best|latest|STEP",
                   help="which saved step to use (default best: the best by the run's validation metric, which is "
                        "the latest when the run never evaluated)")


def _add_decode_args(p: argparse.ArgumentParser) -> None:
    _add_checkpoint_arg(p)
    p.add_argument("--beam", type=int, default=0, metavar="K", help="beam search with K beams (default: greedy)")
    p.add_argument("--alpha", type=float, default=0.0, help="beam length penalty ((5+len)/6)**alpha; 0: plain logprob")
    p.add_argument("--sample", action="store_true", help="sample instead of searching (see --temperature, --top-k)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0, help="sample among the K most likely tokens (0: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--batch-size", type=int, default=64, help="sentences decoded together")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="dataset instead of --task: multi30k:de-en[:tok], parallel_text:SRC,TGT (or a TSV), "
                                  "tfds:wmt14_translate/de-en")
    p.add_argument("--data-dir", help="where TFDS keeps prepared datasets (default: TFDS's, ~/tensorflow_datasets)")
    p.add_argument("--manual-dir", help="directory holding already downloaded files (Multi30k offline)")
    p.add_argument("--tokenizer", choices=("word", "space", "char", "spm"), default="word",
                   help="word: regex words and punctuation; space: split on whitespace (pre-tokenized text); "
                        "char; spm: SentencePiece trained on the train split")
    p.add_argument("--lowercase", action="store_true")
    p.add_argument("--word-regex", help="token regex for --tokenizer word")
    p.add_argument("--spm-vocab-size", type=int, default=8000)
    p.add_argument("--spm-separate", action="store_true", help="one SentencePiece model per language (default: joint)")
    p.add_argument("--min-freq", type=int, help="keep tokens seen this often in train (default 2 for words, else 1)")
    p.add_argument("--max-vocab", type=int, help="at most this many tokens per vocabulary, specials included")
    p.add_argument("--max-len", type=int, help="leave out training pairs longer than this many tokens "
                                               "(default 100, or less to fit the largest bucket)")
    p.add_argument("--buckets", help="padded widths of batches, e.g. 16,24,48 (each one jit compilation; "
                                     "default 8,12,16,24,32,48,64,96,128,192,256)")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock training budget (0: none): stop, "
                                                               "evaluate and save after the step that passes it")


def cmd_export(args: argparse.Namespace) -> int:
    # torch and onnx are loaded only for this verb: the library itself never imports them.
    from export.onnx_export import describe, export_workdir

    print(describe(export_workdir(args.workdir, args.out, args.quantize, which=args.checkpoint), args.out))
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Random padded inputs through Flax and torch_ref with the same weights; print the errors."""
    from torch_ref.parity import parity_report  # torch only for this verb

    overrides = {"src_vocab_size": 37, "tgt_vocab_size": 41, "dropout": 0.0, **parse_overrides(args.set)}
    cfg = presets.get(args.preset, **overrides)
    try:
        report = parity_report(cfg, seed=args.seed)
    except AssertionError as e:
        print(f"s2s-jax parity: FAILED for {args.preset}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"preset": args.preset, **report}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s-jax", description="Sequence-to-sequence models in JAX/Flax.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("presets", help="list the named model configs")
    p.set_defaults(func=cmd_presets)

    p = verbs.add_parser("train", help="train a preset on a task and save the run in a workdir")
    p.add_argument("--preset", help="model preset (see `s2s-jax presets`); leave it out to resume the run in "
                                     "--workdir as saved")
    p.add_argument("--task", default="addition", help="synthetic task (default: addition)")
    p.add_argument("--digits", type=int, default=2, help="operand digits for the addition task")
    p.add_argument("--workdir", required=True, help="directory for config.json, vocab.json, checkpoints/; "
                                                    "one that holds this run already is resumed")
    # Defaults of None mean "the run config's" (training/config.py, or the recipe): see train_args.py.
    p.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    p.add_argument("--batch-size", type=int, help="rows per step, over all devices (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--schedule", choices=schedule_choices(), help="learning-rate schedule (default cosine)")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warmup before the schedule")
    p.add_argument("--label-smoothing", type=float, help="e.g. 0.1, the modern transformer's intent")
    p.add_argument("--seed", type=int, help="seeds parameters, dropout and the task's data split (default 0)")
    p.add_argument("--eval-every", type=int, help="held-out greedy exact match every N steps (default 500)")
    p.add_argument("--set", action="append", default=[], metavar="[SECTION.]KEY=VALUE",
                   help="run config override: model.hid_dim=64 (or bare hid_dim=64), optimizer.b2=0.98, "
                        "training.keep=3, data.digits=3, decoding.beam=4")
    add_run_args(p)
    _add_data_args(p)
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("translate", help="decode inputs greedily with a trained workdir")
    p.add_argument("--workdir", required=True)
    p.add_argument("inputs", nargs="*", help="inputs such as 12+35 (default: --input FILE, else stdin lines)")
    p.add_argument("--input", metavar="FILE", help="translate each line of FILE (UTF-8)")
    _add_decode_args(p)
    p.add_argument("--plot-attention", metavar="PNG",
                   help="write a heatmap of the attention weights (exactly one input; attention, convs2s and "
                        "transformer models)")
    p.set_defaults(func=cmd_translate)

    p = verbs.add_parser("evaluate", help="translate a dataset split; write hypotheses and BLEU/chrF (sacreBLEU)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--split", default="test", help="split to translate (test: the dataset's standard test set)")
    p.add_argument("--out", help="directory for SPLIT.METHOD.hyp and SPLIT.METHOD.json (default: WORKDIR/eval)")
    p.add_argument("--limit", type=int, help="only the first N sentences")
    p.add_argument("--data-dir", help="override the TFDS data dir saved with the run")
    p.add_argument("--manual-dir", help="override the manual dir saved with the run")
    _add_decode_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = verbs.add_parser("export", help="export a trained workdir to ONNX (encoder, decoder step, model.json)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--quantize", choices=["int8"], default=None, help="also write int8 dynamic-quantized graphs")
    _add_checkpoint_arg(p)
    p.set_defaults(func=cmd_export)

    p = verbs.add_parser("parity", help="check a preset against its PyTorch mirror on random padded inputs")
    p.add_argument("--preset", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.set_defaults(func=cmd_parity)

    p = verbs.add_parser("plot", help="training and validation curves of a workdir, as a PNG")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", help="PNG to write (default: WORKDIR/curves.png)")
    p.set_defaults(func=cmd_plot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UserError) as e:
        print(f"s2s-jax {args.verb}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
