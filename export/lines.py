"""Line handling both command lines share (`s2s-jax translate` and `python -m export.runtime`), standard library
only: the runtime imports neither JAX nor s2s_jax (whose package imports JAX), and `s2s_jax.cli` may load
`export` lazily, so the one copy lives here."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any


def stdin_batches(stream: Any, batch_size: int) -> Iterator[list[str]]:
    """Non-blank lines of `stream` in batches of what has arrived (at most `batch_size`): a pipe gives full
    batches, a terminal each answer as soon as its line is in. A reader thread does the blocking reads."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        try:
            for line in stream:
                lines.put(line.rstrip("\r\n"))
        finally:
            lines.put(None)

    threading.Thread(target=read, daemon=True, name="stdin").start()
    ended = False
    while not ended:
        batch = []
        line = lines.get()
        while line is not None:
            if line.strip():
                batch.append(line.strip())
            if len(batch) >= batch_size:
                break
            try:
                line = lines.get(block=not batch)
            except queue.Empty:
                break
        ended = line is None
        if batch:
            yield batch


def one_line(message: object) -> str:
    """`message` with every character that breaks a line escaped (an input echoed in an error may hold any)."""
    return "".join(c if len((c + "x").splitlines()) == 1 else repr(c)[1:-1] for c in str(message))
