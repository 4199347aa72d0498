"""Where training reports go: JSONL files, TensorBoard event files, a tqdm progress bar, and log lines.

    train.jsonl     one line per log interval: step, loss, lr, grad_norm, tokens, steps_per_s, tokens_per_s
    metrics.jsonl   one line per held-out evaluation: step, exact_match, heldout_loss (and bleu when measured)
    tb/             TensorBoard event files (written by tb_events.py, no TensorFlow): train/*, heldout/*,
                    flushed at every record

Only process 0 writes. On resume, lines past the restored step are dropped from
both JSONL files and TensorBoard is told to purge its later events, so the curves
show the run as if it had never been interrupted.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from s2s_jax.errors import UserError

METRICS_FILE = "metrics.jsonl"
TRAIN_LOG_FILE = "train.jsonl"
TB_DIR = "tb"


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path, missing: str | None = None) -> Any:
    """A workdir's JSON file; missing (message `missing`, default: is this a workdir?) or corrupt is a UserError."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(missing or f"{path} is missing; is {path.parent} a workdir written by `s2s-jax train`?") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); the workdir is corrupt") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; a last line cut short by a crash is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_after(path: Path, step: int) -> list[dict[str, Any]]:
    """Keep only the records up to `step` (and rewrite the file atomically); returns them."""
    kept = [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step]
    if path.exists():
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept


class RunLog:
    """Reports of one training process. `log` prints lines (through tqdm while a bar is shown)."""

    def __init__(self, workdir: Path | None, *, start_step: int, total_steps: int, primary: bool = True,
                 progress: bool = False, log: Callable[[str], None] = print) -> None:
        self.workdir = workdir if primary else None
        self.primary = primary
        self._print = log
        self.history: list[dict[str, Any]] = []  # held-out evaluations of the whole run (resumed ones too)
        self.train_records: list[dict[str, Any]] = []  # train.jsonl records written by this process
        self._tb = None
        if self.workdir is not None:
            self.history = truncate_after(self.workdir / METRICS_FILE, start_step)
            truncate_after(self.workdir / TRAIN_LOG_FILE, start_step)
            self._tb = _tensorboard(self.workdir / TB_DIR, start_step)
        self.bar = progress_bar(total_steps, "", "step", initial=start_step, leave=True) if primary and progress \
            else None

    def line(self, text: str) -> None:
        if not self.primary:
            return
        if self.bar is not None and not self.bar.disable:
            self.bar.write(text)
        else:
            self._print(text)

    def advance(self, steps: int, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.update(steps)
            if postfix:
                self.bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in postfix.items()},
                                     refresh=False)

    def _write(self, name: str, prefix: str, record: dict[str, Any]) -> None:
        if self.workdir is None:
            return
        with open(self.workdir / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():  # one event per scalar, as TensorBoard expects
                if k != "step" and isinstance(v, int | float):
                    self._tb.add_scalar(f"{prefix}/{k}", v, record["step"])
            self._tb.flush()  # a killed run keeps its curve up to its last record, as the JSONL files do

    def train(self, record: dict[str, Any]) -> None:
        self.train_records.append(record)
        self._write(TRAIN_LOG_FILE, "train", record)

    def eval(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self._write(METRICS_FILE, "heldout", record)

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self._tb is not None:
            self._tb.close()


def progress_bar(total: int, desc: str, unit: str, *, enabled: bool = True, initial: int = 0,
                 leave: bool = False) -> Any:
    """A tqdm bar on stderr, shown only when stderr is a terminal (disable=None: never in logs, CI or tests);
    a context manager with `update(n)`."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or None, unit=unit, initial=initial, dynamic_ncols=True,
                disable=None if enabled else True, file=sys.stderr, leave=leave)


def _tensorboard(directory: Path, start_step: int) -> Any:
    """A TensorBoard event writer; on resume it tells TensorBoard to drop the old events past `start_step`."""
    from s2s_jax.training.tb_events import EventWriter

    return EventWriter(directory, purge_step=start_step + 1 if start_step else None)
