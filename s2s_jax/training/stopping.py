"""Why a training loop stops before its last step: early stopping, the `--minutes` budget, SIGINT / SIGTERM.

Each is a small object the loop asks once per step; none of them touches the train state.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from typing import Any

from s2s_jax.training.options import BEST_METRICS


class EarlyStop:
    """The best value of the validation metric so far, and how many evaluations since it last improved."""

    def __init__(self, metric: str, patience: int) -> None:
        self.metric, self.mode, self.patience = metric, BEST_METRICS[metric], patience
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0

    def update(self, step: int, record: dict[str, float]) -> bool:
        """Record an evaluation; True when training should stop."""
        value = float(record[self.metric])
        if self.best is None or (value < self.best if self.mode == "min" else value > self.best):
            self.best, self.best_step, self.bad = value, step, 0
        else:
            self.bad += 1
        return bool(self.patience) and self.bad >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load(self, saved: dict[str, Any]) -> None:
        self.best, self.best_step, self.bad = saved.get("best"), saved.get("best_step"), int(saved.get("bad", 0))


class Budget:
    """`--minutes`: the whole run, compilation, steps, evaluations and the final evaluation and save, fits in it.

    The loop stops stepping when what is left would not cover one more step plus the final evaluation and save,
    each as long as the last one measured. The final evaluation's cost is only known once one evaluation has run,
    so when none has by a tenth of the budget, `wants_probe` asks for one then (a real evaluation, recorded as
    every other). Step time is measured between step completions (the loop waits for each step when a budget is
    set, so asynchronous dispatch cannot run ahead of the clock)."""

    PROBE_AT = 0.1

    def __init__(self, minutes: float, begin: float) -> None:
        self.seconds = 60.0 * minutes if minutes else math.inf
        self.begin, self.deadline = begin, begin + self.seconds
        self.eval_seconds: float | None = None
        self.save_seconds = 0.0
        self.step_seconds = 0.0
        self._last_step_end: float | None = None

    @property
    def active(self) -> bool:
        return math.isfinite(self.seconds)

    def step_done(self, now: float) -> None:
        if self._last_step_end is not None:
            self.step_seconds = now - self._last_step_end
        self._last_step_end = now

    def evaluated(self, seconds: float) -> None:
        self.eval_seconds = seconds

    def saved(self, seconds: float) -> None:
        self.save_seconds = max(self.save_seconds, seconds)

    def wants_probe(self, now: float) -> bool:
        return self.active and self.eval_seconds is None and now - self.begin >= self.PROBE_AT * self.seconds

    def exhausted(self, now: float) -> bool:
        reserve = self.step_seconds + (self.eval_seconds or 0.0) + self.save_seconds
        return now + reserve >= self.deadline

    def restart_step_clock(self) -> None:
        """After an evaluation or save: the next step's time is measured from now."""
        self._last_step_end = time.perf_counter()


class Interrupts:
    """SIGINT (Ctrl-C) and SIGTERM during training: noted, so that the loop ends its step, saves a checkpoint and
    returns; a second one while it saves aborts at once (KeyboardInterrupt). Installed only in the main thread
    (Python delivers signals there); elsewhere the signals keep their handlers."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            self._restore()
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _restore(self) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old = {}

    def __exit__(self, *exc: object) -> None:
        self._restore()
