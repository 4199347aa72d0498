"""A training run's workdir: created with its config for a new run, checked against it for a resumed one.

config.json (the RunConfig), vocab.json and the task's tokenizer files are written
when a run starts, before any step, so even a run killed in its first minute can be
resumed; config.json is written last and atomically, because its presence is what
marks a directory as holding a run. Training again on a workdir resumes it if the
config matches (keys in `RESUMABLE` may differ) and is an error naming every
difference otherwise; nothing in the workdir is touched before that check passes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from s2s_jax.config import ConfigError
from s2s_jax.errors import UserError
from s2s_jax.training.checkpoint import CHECKPOINT_DIR, MANIFEST_FILE
from s2s_jax.training.config import RESUMABLE, RunConfig
from s2s_jax.training.logs import METRICS_FILE, read_json, write_atomic

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"


def vocab_json(task: Any) -> dict[str, Any]:
    return {"src": task.src_vocab.to_dict(), "tgt": task.tgt_vocab.to_dict()}


def load_run_config(workdir: str | Path) -> RunConfig:
    """The RunConfig saved in `workdir`/config.json."""
    path = Path(workdir) / CONFIG_FILE
    data = read_json(path)
    try:
        return RunConfig.from_dict(data)
    except (ConfigError, UserError, TypeError) as e:
        raise UserError(f"{path}: {e} (written by another version of s2s-jax?); train in a new --workdir") from None


def holds_run(workdir: str | Path) -> bool:
    return (Path(workdir) / CONFIG_FILE).exists()


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
        try:
            saved_vocab = json.loads((path / VOCAB_FILE).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{path / VOCAB_FILE} is missing or not valid JSON; the workdir is corrupt") from None
        if saved_vocab != vocab_json(task):
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
