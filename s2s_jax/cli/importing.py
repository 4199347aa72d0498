"""`s2s-jax import hf-marian DIR --workdir W` and `s2s-jax import fairseq CKPT --workdir W`.

Reads a pretrained model from local files (s2s_jax/importers), converts its weights with the family's
declared Flax <-> torch table (torch_ref, loaded here, lazily: the one conversion path of tests, export and
imports), and writes a workdir that `translate`, `evaluate`, `export` and `train` use like any run. A bad
checkpoint (missing, unexpected or mis-shaped key, an architecture that does not load) is a `CheckpointError`:
one line on stderr naming the key, exit 2, nothing written.

Fine-tuning: give the data and the run's settings here (`--data SPEC`, `--steps`, `--lr`, `--set ...`), then
`s2s-jax train --workdir W` trains from the imported weights and resumes like any run.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from s2s_jax.cli.train import given_flags, int_list
from s2s_jax.errors import UserError

FORMATS = ("hf-marian", "fairseq")


def read(fmt: str, path: str | Path, **options: Any) -> Any:
    """The `Imported` of a checkpoint in format `fmt` (options: the fairseq reader's dictionary and BPE ones)."""
    if fmt == "hf-marian":
        from s2s_jax.importers.hf_marian import read_marian

        return read_marian(path)
    if fmt == "fairseq":
        from s2s_jax.importers.fairseq import read_fairseq

        return read_fairseq(path, **options)
    raise UserError(f"unknown import format {fmt!r}; choose one of {', '.join(FORMATS)}")


def to_flax(imported: Any) -> Any:
    """Flax params of an `Imported`, through the family's declared table."""
    from s2s_jax.importers import CheckpointError
    from torch_ref.convert import torch_to_flax

    try:
        return torch_to_flax(imported.cfg, imported.state_dict)
    except KeyError as e:  # the importer's own check runs first; this is the table disagreeing with it
        raise CheckpointError(f"{imported.source}: {e.args[0]}") from None


def import_model(fmt: str, path: str | Path, workdir: str | Path, *, data: str = "",
                 settings: dict[str, Any] | None = None, flags: dict[str, dict[str, Any]] | None = None,
                 sets: list[str] | tuple[str, ...] = (), **options: Any) -> Path:
    """Read, convert and write: what the verb does (tests call it in-process)."""
    from s2s_jax.importers.workdir import write_imported

    imported = read(fmt, path, **options)
    return write_imported(workdir, imported, to_flax(imported), data=data, settings=settings, flags=flags, sets=sets)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dest in ("data_dir", "manual_dir", "max_len"):
        if getattr(args, dest) is not None:
            out[dest] = getattr(args, dest)
    if args.buckets:
        out["buckets"] = int_list(args.buckets)
    return out


def cmd_import(args: argparse.Namespace) -> int:
    options = {}
    if args.format == "fairseq":
        options = {"dict_dir": args.dict_dir, "source_lang": args.source_lang, "target_lang": args.target_lang,
                   "bpe": args.bpe, "sentencepiece_model": args.sentencepiece_model}
    path = import_model(args.format, args.path, args.workdir, data=args.data or "", settings=_settings(args),
                        flags=given_flags(args), sets=args.set, **options)
    from s2s_jax.run.workdir import load_run_config

    run = load_run_config(path)
    cfg = run.model
    print(f"imported {args.path} into {path}: {cfg.family} (preset {run.preset}), width {cfg.hid_dim}, "
          f"{cfg.n_layers} layers, vocab {cfg.src_vocab_size}/{cfg.tgt_vocab_size}")
    return 0


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", required=True, help="new directory for the run (config.json, vocab, checkpoint)")
    p.add_argument("--data", help="fine-tuning data, as for train: parallel_text:SRC,TGT, multi30k:de-en, tfds:...")
    p.add_argument("--data-dir", help="where TFDS keeps prepared datasets")
    p.add_argument("--manual-dir", help="directory holding already downloaded files")
    p.add_argument("--max-len", type=int, help="leave out training pairs longer than this many tokens")
    p.add_argument("--buckets", help="padded widths of batches, e.g. 16,24,48")
    for flag, kind in (("--steps", int), ("--batch-size", int), ("--lr", float), ("--warmup-steps", int),
                       ("--label-smoothing", float), ("--seed", int), ("--eval-every", int), ("--log-every", int),
                       ("--grad-accum", int), ("--checkpoint-every", int), ("--keep", int), ("--patience", int)):
        p.add_argument(flag, type=kind, help="as for train (the fine-tuning run's setting)")
    p.add_argument("--schedule", help="as for train")
    p.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), help="as for train")
    p.add_argument("--best-metric", help="as for train")
    p.add_argument("--precision", help="as for train")
    p.add_argument("--minutes", type=float, default=0.0, help="as for train")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="run config values: model.dropout (and attention_dropout, activation_dropout), data.len_a, "
                        "optimizer.*, training.*, decoding.beam ...")


def add_parser(verbs: Any) -> None:
    """Register `import` and its two formats on the `s2s-jax` verb parsers."""
    p = verbs.add_parser("import", help="import a pretrained model (Hugging Face Marian / OPUS-MT, fairseq) into a "
                                        "workdir")
    formats = p.add_subparsers(dest="format", required=True)
    hf = formats.add_parser("hf-marian", help="a MarianMTModel save_pretrained directory (config.json, "
                                              "model.safetensors, source.spm, target.spm, vocab.json)")
    hf.add_argument("path", metavar="DIR")
    _add_run_args(hf)
    fs = formats.add_parser("fairseq", help="a fairseq transformer or fconv checkpoint (checkpoint_best.pt) with "
                                            "its dict.SRC.txt and dict.TGT.txt")
    fs.add_argument("path", metavar="CKPT")
    fs.add_argument("--dict-dir", help="directory of dict.*.txt (default: the checkpoint's)")
    fs.add_argument("--source-lang", help="dict.SRC.txt's SRC (default: the checkpoint's args)")
    fs.add_argument("--target-lang", help="dict.TGT.txt's TGT (default: the checkpoint's args)")
    fs.add_argument("--bpe", choices=("none", "subword_nmt", "sentencepiece"), default="none",
                    help="how output tokens join into text (fairseq's --post-process); input text is given with "
                         "the BPE applied, except for sentencepiece, which encodes it")
    fs.add_argument("--sentencepiece-model", help="the SentencePiece model of --bpe sentencepiece")
    _add_run_args(fs)
    for sub in (hf, fs):
        sub.set_defaults(func=cmd_import)
