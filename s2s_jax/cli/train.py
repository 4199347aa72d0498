"""`s2s-jax train`: flags -> a new run (`--preset`) or the saved one resumed, then `s2s_jax.run.train`."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from s2s_jax.errors import UserError

# flag dest -> (section, key); these flags default to None so that "not given" is visible
FLAG_KEYS = {
    "steps": ("training", "steps"), "batch_size": ("training", "batch_size"), "eval_every": ("training", "eval_every"),
    "log_every": ("training", "log_every"), "grad_accum": ("training", "grad_accum"),
    "precision": ("training", "precision"), "keep": ("training", "keep"),
    "checkpoint_every": ("training", "checkpoint_every"), "best_metric": ("training", "best_metric"),
    "patience": ("training", "patience"), "shard_params": ("training", "shard_params"),
    "max_tokens": ("training", "max_tokens"),
    "seed": ("training", "seed"), "lr": ("optimizer", "lr"), "schedule": ("optimizer", "schedule"),
    "warmup_steps": ("optimizer", "warmup_steps"), "label_smoothing": ("optimizer", "label_smoothing"),
    "optimizer": ("optimizer", "name"), "ema_decay": ("optimizer", "ema_decay"),
}
# dests that are not data settings (everything else the train parser defines describes the task)
RUN_DESTS = set(FLAG_KEYS) | {"verb", "func", "preset", "workdir", "set", "recipe", "minutes", "progress",
                               "coordinator", "num_processes", "process_id", "distributed"}


def given_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """{section: {key: value}} of the run-config flags that were given."""
    out: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if args.minutes:
        out.setdefault("training", {})["minutes"] = args.minutes
    return out


def make_task(args: argparse.Namespace) -> Any:
    """`--data SPEC`: a translation task read from a dataset; otherwise the synthetic `--task`."""
    from s2s_jax.data.tasks import TASKS, build_task

    seed = 0 if args.seed is None else args.seed
    if not args.data:
        if hasattr(TASKS.get(args.task), "create"):  # a task that reads a dataset is defined by --data
            raise UserError(f"--task {args.task} reads a dataset: give it as --data SPEC (e.g. --data "
                            "multi30k:de-en, or parallel_text:SRC,TGT), which implies the task")
        return build_task(args.task, digits=args.digits, seed=seed)
    from s2s_jax.data.translation import TranslationTask

    min_freq = args.min_freq if args.min_freq is not None else (2 if args.tokenizer in ("word", "space") else 1)
    return TranslationTask.create(
        args.data, data_dir=args.data_dir, manual_dir=args.manual_dir, tokenizer=args.tokenizer,
        lowercase=args.lowercase, regex=args.word_regex, spm_vocab_size=args.spm_vocab_size,
        spm_joint=not args.spm_separate, min_freq=min_freq, max_vocab=args.max_vocab, max_len=args.max_len,
        seed=seed, **({"buckets": int_list(args.buckets)} if args.buckets else {}),
    )


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"expected comma-separated integers, got {text!r}") from None


def run_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """(RunConfig, task) that `train` with these flags means."""
    from s2s_jax.cli.parser import build_parser
    from s2s_jax.run.train import define_run, saved_run

    flags = given_flags(args)
    if args.preset is not None:
        return define_run(args.preset, make_task(args), recipe=args.recipe, flags=flags, sets=args.set)
    defaults = build_parser().parse_args(["train", "--workdir", args.workdir])
    data_flags = sorted(d for d, v in vars(args).items() if d not in RUN_DESTS and v != getattr(defaults, d, None))
    if data_flags or args.recipe:
        given = ", ".join("--" + d.replace("_", "-") for d in data_flags + (["recipe"] if args.recipe else []))
        raise UserError(f"{given}: a run resumed from its workdir takes its data and recipe from "
                        f"{args.workdir}/config.json; drop them (or give --preset to define the run again)")
    return saved_run(args.workdir, flags=flags, sets=args.set)


def cmd_train(args: argparse.Namespace) -> int:
    """A new run (with --preset), or the run in --workdir resumed."""
    if args.distributed or args.coordinator:  # before anything touches a device
        from s2s_jax.training.sharding import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)
    from s2s_jax.run.train import train_run

    run, task = run_from_args(args)
    result = train_run(run, task, args.workdir, progress=args.progress)
    if result.stopped.startswith("interrupted"):  # saved; the shell's code for death by that signal
        return 128 + (signal.SIGTERM if "SIGTERM" in result.stopped else signal.SIGINT)
    steps = int(result.state.step)
    print(f"held-out exact match {result.exact_match:.2%} after {steps} steps ({result.seconds:.0f}s)")
    return 0
