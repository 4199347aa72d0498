"""The `train` verb's command line -> (RunConfig, task): flags, recipes, `--set section.key=value`, resuming.

Two ways to call `train`:
- with `--preset`: a run is defined from the preset, recipe, flags and `--set`s; if `--workdir` already
  holds a run, the two configs must match and training resumes (otherwise an error lists the differences);
- without `--preset`: `--workdir` must hold a run; its config.json defines everything and training resumes.
  Flags given then are still checked against the saved config (so `--steps 500` on a 300-step run is an
  error, not silently ignored); data flags (which define the task) are refused.
"""

from __future__ import annotations

import argparse
from typing import Any

from s2s_jax.config import ModelConfig
from s2s_jax.errors import UserError
from s2s_jax.training.config import (
    BEST_METRICS,
    PRECISIONS,
    RECIPES,
    DataConfig,
    RunConfig,
    model_overrides,
    recipe_for,
    split_overrides,
    typed_overrides,
)
from s2s_jax.training.schedules import SCHEDULES

# flag dest -> (section, key); these flags default to None so that "not given" is visible
FLAG_KEYS = {
    "steps": ("training", "steps"), "batch_size": ("training", "batch_size"), "eval_every": ("training", "eval_every"),
    "log_every": ("training", "log_every"), "grad_accum": ("training", "grad_accum"),
    "precision": ("training", "precision"), "keep": ("training", "keep"),
    "checkpoint_every": ("training", "checkpoint_every"), "best_metric": ("training", "best_metric"),
    "patience": ("training", "patience"), "shard_params": ("training", "shard_params"),
    "lr": ("optimizer", "lr"), "schedule": ("optimizer", "schedule"), "warmup_steps": ("optimizer", "warmup_steps"),
    "label_smoothing": ("optimizer", "label_smoothing"), "optimizer": ("optimizer", "name"),
}
# dests that are not data settings (everything else the train parser defines describes the task)
RUN_DESTS = set(FLAG_KEYS) | {"verb", "func", "preset", "workdir", "set", "recipe", "seed", "minutes", "progress",
                               "coordinator", "num_processes", "process_id", "distributed"}


def add_run_args(p: argparse.ArgumentParser) -> None:
    """Flags of the run config beyond the basic ones cli.py defines (steps, batch size, lr, ...)."""
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
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no tqdm progress bar")
    g = p.add_argument_group("multi-process (several hosts, see README)")
    g.add_argument("--distributed", action="store_true", help="join a jax.distributed run (cluster auto-detected "
                                                              "on SLURM / Open MPI / TPU, else give the three below)")
    g.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0")
    g.add_argument("--num-processes", type=int)
    g.add_argument("--process-id", type=int)


def schedule_choices() -> tuple[str, ...]:
    return SCHEDULES


def maybe_init_distributed(args: argparse.Namespace) -> None:
    """Before anything touches a device: join the multi-process run if asked to."""
    if getattr(args, "distributed", False) or getattr(args, "coordinator", None):
        from s2s_jax.training.sharding import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)


def task_from_settings(settings: dict[str, Any]) -> Any:
    """Rebuild a training task (with its data) from `task.settings()`."""
    from s2s_jax.data.tasks import TASKS, build_task

    settings = dict(settings)
    name = settings.pop("name", "")
    cls = TASKS.get(name)
    if cls is not None and hasattr(cls, "create"):  # text tasks read and tokenize their data
        return cls.create(**settings)
    return build_task(name, **settings)


def _given_flags(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            out.setdefault(section, {})[key] = value
    if getattr(args, "seed", None) is not None:
        out.setdefault("training", {})["seed"] = args.seed
    if getattr(args, "minutes", None):
        out.setdefault("training", {})["minutes"] = args.minutes
    return out


def run_from_args(args: argparse.Namespace, make_task: Any, defaults: argparse.Namespace) -> tuple[RunConfig, Any]:
    """(run config, task) for `s2s-jax train`; `defaults` is the parser's namespace for `train` with no flags."""
    from s2s_jax.training.loop import config_for_task
    from s2s_jax.training.rundir import holds_run, load_run_config

    overrides = split_overrides(args.set)
    flags = _given_flags(args)
    if args.preset is None:
        if not holds_run(args.workdir):
            raise UserError(f"--preset is required for a new run (`s2s-jax presets` lists them); {args.workdir} "
                            "holds no run to resume")
        data_flags = sorted(d for d, v in vars(args).items()
                            if d not in RUN_DESTS and v != getattr(defaults, d, None))
        if data_flags or args.recipe:
            given = ", ".join("--" + d.replace("_", "-") for d in data_flags + (["recipe"] if args.recipe else []))
            raise UserError(f"{given}: a run resumed from its workdir takes its data and recipe from "
                            f"{args.workdir}/config.json; drop them (or give --preset to define the run again)")
        run = load_run_config(args.workdir)
        task = task_from_settings(run.data.to_dict())
        sections = ("model", "data", "optimizer", "training", "decoding")
    else:
        if args.seed is None:
            args.seed = 0
        task = make_task(args)
        if overrides.get("data"):
            base = RunConfig(model=ModelConfig(), data=DataConfig.of(task.settings()))
            task = task_from_settings({**task.settings(), **typed_overrides(base, "data", overrides["data"])})
        cfg = config_for_task(args.preset, task, model_overrides(overrides.get("model", {})))
        run = RunConfig(model=cfg, data=DataConfig.of(task.settings()), preset=args.preset)
        for section, values in recipe_for(args.preset, args.recipe).items():
            run = run.replace(section, **values)
        sections = ("optimizer", "training", "decoding")
    for section, values in flags.items():
        run = run.replace(section, **values)
    for section in sections:
        if overrides.get(section):
            run = run.replace(section, **typed_overrides(run, section, overrides[section]))
    return run, task
