"""A run's workdir: its one writer (`open_for_training`, and `save_run` on top) and its one reader (`load_run`).

Layout:
    config.json    the RunConfig: {"preset", "model", "data" (task settings), "optimizer", "training", "decoding"}
    vocab.json     {"src": Vocab, "tgt": Vocab}
    tokenizer.json text tasks only: tokenizer settings (+ spm.*.model SentencePiece files)
    checkpoints/   orbax CheckpointManager; each step holds items `params`, `opt_state` and `meta` (step,
                   dropout RNG, data position, config, vocab); see training/checkpoint.py
    manifest.json  size and sha256 of every file of every finished checkpoint step; latest and best step
    metrics.jsonl  one line per held-out evaluation during training; train.jsonl one per log interval;
                   tb/ the same as TensorBoard events (training/logs.py)

config.json, vocab.json and the task's tokenizer files are written when a run starts,
before any step, so even a run killed in its first minute can be resumed;
config.json is written last and atomically, because its presence is what marks a
directory as holding a run. Training again on a workdir resumes it if the config
matches (keys in `RESUMABLE` may differ) and is an error naming every difference
otherwise; nothing in the workdir is touched before that check passes.

Everything that reads a workdir (resuming, translate, evaluate, export) comes through
`load_run_config` / `load_run`, which return the typed RunConfig, so no reader can
lose a field another one wrote. Every failure to read is a `UserError` naming the path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from s2s_jax.data.tasks import build_task
from s2s_jax.data.vocab import Vocab
from s2s_jax.errors import ConfigError, UserError
from s2s_jax.run.config import RESUMABLE, RunConfig
from s2s_jax.training.checkpoint import CHECKPOINT_DIR, MANIFEST_FILE
from s2s_jax.training.locks import PID_FILE, WorkdirOwner
from s2s_jax.training.logs import METRICS_FILE, read_json, write_atomic

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"


@dataclasses.dataclass
class Run:
    """What a workdir holds, rebuilt: where it is, its config, its task (with the saved vocab), a checkpoint."""

    path: Path
    config: RunConfig
    task: Any
    params: Any
    step: int


def vocab_json(task: Any) -> dict[str, Any]:
    return {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()}


def holds_run(workdir: str | Path) -> bool:
    return (Path(workdir) / CONFIG_FILE).exists()


def load_run_config(workdir: str | Path) -> RunConfig:
    """The RunConfig saved in `workdir`/config.json."""
    path = Path(workdir)
    if not path.is_dir():
        raise UserError(f"workdir {path} does not exist")
    data = read_json(path / CONFIG_FILE)
    try:
        return RunConfig.from_dict(data)
    except (UserError, TypeError, AttributeError) as e:
        raise UserError(f"{path / CONFIG_FILE}: {e} (written by another version of s2s-jax?); train in a new "
                        "--workdir") from None


def read_vocab(workdir: str | Path) -> tuple[Vocab, Vocab]:
    """(source, target) vocabularies of `workdir`/vocab.json."""
    path = Path(workdir) / VOCAB_FILE
    data = read_json(path)
    try:
        return Vocab.from_dict(data["src"]), Vocab.from_dict(data["tgt"])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path} lacks {e} or is malformed; the workdir is corrupt") from None


def load_task(workdir: str | Path, config: RunConfig) -> Any:
    """The run's task rebuilt from its settings, with the workdir's tokenizers and vocabs (no training data read)."""
    path = Path(workdir)
    settings = config.data.to_dict()
    task = build_task(settings.pop("name", ""), **settings)
    src, tgt = read_vocab(path)
    if hasattr(task, "load_files"):  # text tasks: tokenizers and vocabs come from the workdir, not from data
        task.load_files(path, src, tgt)
    elif src != task.src_vocab or tgt != task.tgt_vocab:
        raise UserError(f"{path / VOCAB_FILE} does not match the {task.name} task's vocabulary")
    cfg = config.model
    if (cfg.src_vocab_size, cfg.tgt_vocab_size) != (len(src), len(tgt)):
        raise UserError(f"{path / CONFIG_FILE}: vocab sizes {cfg.src_vocab_size}/{cfg.tgt_vocab_size} do not match "
                        f"{path / VOCAB_FILE} ({len(src)}/{len(tgt)})")
    return task


def open_for_training(workdir: str | Path, run: RunConfig, task: Any, primary: bool = True) -> tuple[Path, bool]:
    """(path, resuming): a new workdir set up for `run`, or an existing one whose config and vocab match it."""
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise UserError(f"workdir {path} exists and is not a directory")
    if holds_run(path):
        saved = load_run_config(path)
        diffs = [d for d in saved.diff(run) if d[0] not in RESUMABLE]
        if diffs:
            shown = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, a, b in diffs[:6])
            more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
            raise UserError(f"workdir {path} holds a run with a different config, so it cannot be resumed: {shown}"
                            f"{more}. Rerun with the saved settings (`s2s-jax train --workdir {path}` alone "
                            "resumes it as saved) or choose a new --workdir")
        src, tgt = read_vocab(path)
        if {"src": src.to_dict(), "tgt": tgt.to_dict()} != vocab_json(task):
            raise UserError(f"{path / VOCAB_FILE} does not match the vocabulary built from the data now; the data "
                            "changed since the run started, so it cannot be resumed exactly")
        return path, True
    leftovers = [n for n in (CHECKPOINT_DIR, MANIFEST_FILE, METRICS_FILE) if (path / n).exists()]
    if leftovers:
        raise UserError(f"workdir {path} holds {', '.join(leftovers)} but no {CONFIG_FILE}; it is not a run that "
                        "can be resumed: choose a new --workdir or delete it")
    if primary:
        path.mkdir(parents=True, exist_ok=True)
        write_atomic(path / VOCAB_FILE, json.dumps(vocab_json(task), ensure_ascii=False, indent=1) + "\n")
        if hasattr(task, "save_files"):  # text tasks keep their tokenizers (SentencePiece models) with the model
            task.save_files(path)
        write_atomic(path / CONFIG_FILE, run.to_json())
    return path, False


@contextlib.contextmanager
def owning(workdir: str | Path, log: Callable[[str], None] = print) -> Iterator[bool]:
    """Hold `workdir` as its one writer (yields whether this is the primary process, the one that writes): a
    second writer meets a UserError naming this process. Only process 0 of a multi-process run locks."""
    from s2s_jax.training import sharding

    if not sharding.is_primary():
        yield False
        return
    with WorkdirOwner(workdir) as owner:
        if owner.stale_pid is not None and owner.stale_pid != os.getpid():
            log(f"{Path(workdir) / PID_FILE}: the trainer with PID {owner.stale_pid} ended without closing the "
                "workdir (killed?); taking it over")
        yield True


def save_run(workdir: str | Path, run: RunConfig, task: Any, state: Any) -> Path:
    """A new workdir holding `run` and one checkpoint of `state` (at its step), written by the code `train`
    writes with (`open_for_training`, the loop's checkpoint meta): for runs whose weights come from elsewhere
    (tests, imported checkpoints)."""
    from s2s_jax.run.config import BEST_METRICS
    from s2s_jax.training.checkpoint import Checkpoints
    from s2s_jax.training.loop import checkpoint_meta

    if holds_run(workdir):
        raise UserError(f"workdir {workdir} already holds a run; choose a new --workdir or delete it")
    with owning(workdir):
        path, _ = open_for_training(workdir, run, task)
        tc, step = run.training, int(state.step)
        ckpt = Checkpoints(path, keep=tc.keep, metric=tc.best_metric, mode=BEST_METRICS[tc.best_metric],
                           use_async=False)
        ckpt.save(step, state, checkpoint_meta(step, state, tc, task, {}, run.to_dict(), data={"batches": step}))
        ckpt.close()
    return path


def load_run(workdir: str | Path, which: str | int = "latest") -> Run:
    """Config, task and one set of weights: a checkpoint's params ("latest", "best" by the validation metric, or
    a step number), its EMA ("ema", "ema:STEP") or the averaged checkpoint ("averaged"); see `run.weights`.
    Rebuilt from `workdir` alone, onto this process's first device whatever mesh the run was trained on."""
    from s2s_jax.run.weights import read_weights

    path = Path(workdir)
    config = load_run_config(path)
    try:
        task = load_task(path, config)
    except ConfigError as e:
        raise UserError(f"{path / CONFIG_FILE}: {e}; the workdir is corrupt") from None
    if which != "averaged" and (not (path / CHECKPOINT_DIR).is_dir() or not (path / MANIFEST_FILE).exists()):
        raise UserError(f"workdir {path} has no complete checkpoint; training did not finish")
    params, step = read_weights(path, config, task, which)
    return Run(path=path, config=config, task=task, params=params, step=step)
