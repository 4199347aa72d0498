"""Every verb's flags in one place; each verb's code is in the module its `func` comes from.

Flags of the run config default to None, meaning "the run's value" (the preset's recipe
for a new run, config.json for a saved one), so that a flag that was not given is
visible: `translate --beam` overrides the run's `decoding.beam`, `train --steps` the
run's `training.steps`.
"""

from __future__ import annotations

import argparse
from typing import NoReturn

from s2s_jax import __version__
from s2s_jax.cli import importing, tools, train, translate
from s2s_jax.run.config import BEST_METRICS, PRECISIONS, RECIPES
from s2s_jax.training.schedules import SCHEDULES


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as every other error of the CLI: one line on stderr, exit 2 (argparse's own
    prints the whole usage first). `--help` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        from export.lines import one_line

        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def checkpoint_choice(text: str) -> str | int:
    """`--checkpoint`: "best", "latest", a step number, "ema", "ema:STEP" or "averaged" (see `run.weights`)."""
    if text in ("best", "latest", "ema", "averaged"):
        return text
    step = text.removeprefix("ema:")
    try:
        return f"ema:{int(step)}" if text.startswith("ema:") else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not best, latest, a step number, ema[:STEP] or "
                                         "averaged") from None


def add_checkpoint_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=checkpoint_choice, default="best", metavar="best|latest|STEP|ema|averaged",
                   help="which weights to use (default best: the best step by the run's validation metric, which "
                        "is the latest when the run never evaluated; ema[:STEP]: the EMA of the params kept with "
                        "--ema-decay; averaged: what `s2s-jax average` wrote)")


def add_decode_args(p: argparse.ArgumentParser) -> None:
    """Decoding flags; each left out takes the run's `decoding` section (`train --set decoding.beam=4`)."""
    add_checkpoint_arg(p)
    p.add_argument("--beam", type=int, metavar="K", help="beam search with K beams; 1 is greedy (default: the run's "
                                                          "decoding.beam, 1 unless set at training)")
    p.add_argument("--alpha", type=float, help="beam length penalty ((5+len)/6)**alpha; 0: plain logprob")
    p.add_argument("--sample", action="store_const", const=True,
                   help="sample instead of searching (see --temperature, --top-k)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-k", type=int, help="sample among the K most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, help="sample within the nucleus of probability P (1: all)")
    p.add_argument("--seed", type=int, help="sampling seed (a sentence's draws follow the seed and the sentence)")
    p.add_argument("--no-repeat-ngram", type=int, metavar="N", help="never repeat an N-gram within an output")
    p.add_argument("--ensemble", action="append", default=[], metavar="WORKDIR",
                   help="decode with this run too (repeatable; same vocabularies), the models' probabilities "
                        "averaged each step; --checkpoint applies to every one")
    p.add_argument("--batch-size", type=int, default=64, help="sentences decoded together")


def add_data_args(p: argparse.ArgumentParser) -> None:
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


def add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", help="model preset (see `s2s-jax presets`); leave it out to resume the run in "
                                     "--workdir as saved")
    p.add_argument("--task", default="addition", help="synthetic task (default: addition)")
    p.add_argument("--digits", type=int, default=2, help="operand digits for the addition task")
    p.add_argument("--workdir", required=True, help="directory for config.json, vocab.json, checkpoints/; "
                                                    "one that holds this run already is resumed")
    p.add_argument("--steps", type=int, help="optimizer steps (default 3000)")
    p.add_argument("--batch-size", type=int, help="rows per step, over all devices (default 128)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="text tasks: batches of about N padded tokens "
                                                               "instead of --batch-size rows (fairseq's --max-tokens)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3)")
    p.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule (default cosine)")
    p.add_argument("--warmup-steps", type=int, help="linear learning-rate warmup before the schedule")
    p.add_argument("--label-smoothing", type=float, help="e.g. 0.1, the modern transformer's intent")
    p.add_argument("--ema-decay", type=float, help="keep an exponential moving average of the params (e.g. 0.999), "
                                                   "saved with each checkpoint; translate with --checkpoint ema")
    p.add_argument("--seed", type=int, help="seeds parameters, dropout and the task's data split (default 0)")
    p.add_argument("--eval-every", type=int, help="held-out exact match every N steps (default 500)")
    p.add_argument("--set", action="append", default=[], metavar="[SECTION.]KEY=VALUE",
                   help="run config override: model.hid_dim=64 (or bare hid_dim=64), optimizer.b2=0.98, "
                        "training.keep=3, data.digits=3, decoding.beam=4 (the default of translate/evaluate)")
    p.add_argument("--recipe", choices=sorted(RECIPES), help="training preset (default: the one named like --preset, "
                                                             "e.g. transformer's inverse-sqrt warmup, else default)")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), help="optimizer (default adam)")
    p.add_argument("--log-every", type=int, help="progress line and train.jsonl record every N steps (default 100)")
    p.add_argument("--grad-accum", type=int, metavar="K", help="split each batch into K micro-batches (default 1)")
    p.add_argument("--precision", choices=PRECISIONS, help="bf16: bfloat16 compute, float32 params and loss")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help="also checkpoint every N steps (default: "
                                                                     "at evaluations and at the end)")
    p.add_argument("--keep", type=int, metavar="N", help="keep the latest N checkpoints (plus the best; default 2)")
    p.add_argument("--best-metric", choices=tuple(BEST_METRICS), help="validation metric of the best checkpoint and "
                                                                      "of early stopping (default heldout_loss)")
    p.add_argument("--patience", type=int, metavar="N", help="stop after N evaluations without improvement")
    p.add_argument("--shard-params", action="store_const", const=True, help="shard params over the devices")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock training budget (0: none): stop, "
                                                               "evaluate and save after the step that passes it")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm progress bar")
    g = p.add_argument_group("multi-process (several hosts, see README)")
    g.add_argument("--distributed", action="store_true", help="join a jax.distributed run (cluster auto-detected "
                                                              "on SLURM / Open MPI / TPU, else give the three below)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)
    add_data_args(p)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="s2s-jax", description="Sequence-to-sequence models in JAX/Flax.")
    parser.add_argument("--version", action="version", version=f"s2s-jax {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("presets", help="list the named model configs")
    p.set_defaults(func=tools.cmd_presets)

    p = verbs.add_parser("train", help="train a preset on a task and save the run in a workdir")
    add_train_args(p)
    p.set_defaults(func=train.cmd_train)

    p = verbs.add_parser("translate", help="decode inputs with a trained workdir (greedy unless the run or --beam "
                                           "says otherwise)")
    p.add_argument("--workdir", required=True)
    p.add_argument("inputs", nargs="*", help="inputs such as 12+35 (default: --input FILE, else stdin lines)")
    p.add_argument("--input", metavar="FILE", help="translate each line of FILE (UTF-8)")
    add_decode_args(p)
    p.add_argument("--n-best", type=int, default=1, metavar="N", help="print the N best hypotheses of the beam "
                                                                     "(tab-separated, best first; N <= --beam)")
    p.add_argument("--format", choices=("text", "jsonl"), default="text",
                   help="jsonl: one JSON object per input: input, hypotheses [{text, score}] (the search's "
                        "length-penalised log-prob), as `python -m export.runtime --format jsonl`")
    p.add_argument("--prefix-file", metavar="FILE",
                   help="force each output to start with the target text on the same line of FILE (one line per "
                        "input; an empty line: no prefix); or give INPUT<TAB>PREFIX lines")
    p.add_argument("--print-scores", action="store_true",
                   help="with each hypothesis, its tokens and their log-probs (jsonl: tokens, token_scores; text: "
                        "score<TAB>text)")
    p.add_argument("--print-alignment", action="store_true",
                   help="each output token's source position, the argmax of its attention (attention families; "
                        "jsonl: alignment; text: Pharaoh SRC-TGT pairs after a tab)")
    p.add_argument("--replace-unk", action="store_true",
                   help="replace each <unk> of the output by the source token it is aligned to (attention families)")
    p.add_argument("--plot-attention", metavar="PNG",
                   help="write a heatmap of the attention weights (exactly one input, greedy; families with "
                        "attention weights)")
    p.set_defaults(func=translate.cmd_translate)

    p = verbs.add_parser("evaluate", help="translate a dataset split; write hypotheses and BLEU/chrF (sacreBLEU)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--split", help="split to translate (default test: the dataset's standard test set; Multi30k's "
                                   "test_2017, test_2017_mscoco, test_2018 are read from the manual dir when there)")
    p.add_argument("--src", metavar="FILE", help="evaluate on this source file instead of a split (with --ref)")
    p.add_argument("--ref", metavar="FILE", help="the reference translations of --src, line by line")
    p.add_argument("--out", help="directory for SPLIT.METHOD.hyp and SPLIT.METHOD.json (default: WORKDIR/eval)")
    p.add_argument("--limit", type=int, help="only the first N sentences")
    p.add_argument("--data-dir", help="override the TFDS data dir saved with the run")
    p.add_argument("--manual-dir", help="override the manual dir saved with the run")
    add_decode_args(p)
    p.set_defaults(func=translate.cmd_evaluate)

    p = verbs.add_parser("export", help="export a trained workdir to ONNX (encoder, decoder step, model.json) or "
                                        "CTranslate2 (Transformer models)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--format", choices=["onnx", "ctranslate2"], default="onnx",
                   help="onnx: for export.runtime (onnxruntime); ctranslate2: a CTranslate2 model (pip install "
                        "ctranslate2)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="onnx: also write int8 dynamic-quantized graphs; ctranslate2: store int8 weights")
    add_checkpoint_arg(p)
    p.set_defaults(func=tools.cmd_export)

    p = verbs.add_parser("average", help="average the params of the last N checkpoints (fairseq's "
                                         "average_checkpoints) into WORKDIR/averaged: --checkpoint averaged")
    p.add_argument("--workdir", required=True)
    p.add_argument("--last", type=int, metavar="N", help="the last N kept checkpoints (default: all kept)")
    p.add_argument("--steps", metavar="A,B,...", help="these kept steps instead")
    p.set_defaults(func=tools.cmd_average)

    p = verbs.add_parser("parity", help="check a preset against its PyTorch mirror on random padded inputs")
    p.add_argument("--preset", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.set_defaults(func=tools.cmd_parity)

    p = verbs.add_parser("plot", help="training and validation curves of a workdir, as a PNG")
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", help="PNG to write (default: WORKDIR/curves.png)")
    p.set_defaults(func=tools.cmd_plot)

    importing.add_parser(verbs)
    return parser
