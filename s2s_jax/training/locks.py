"""Who may write a workdir, and when a checkpoint may be deleted: advisory `flock` locks on directories.

Two locks, both on directory file descriptors (so they add no file to the workdir, and the
kernel drops them when their process dies, SIGKILL included: a lock is never stale):

    the workdir itself    exclusive, held by the one training process for its whole run. A
                          second `train` fails at once with the holder's PID, read from
                          `train.pid`, a file that exists only while a trainer runs (one left by a
                          killed trainer is stale and is simply replaced).
    its checkpoints/      shared while a reader (translate, evaluate, export, a resumed trainer)
                          picks a step and reads it; exclusive, without waiting, while the trainer
                          deletes steps it no longer keeps. A reader therefore never sees a step
                          vanish under it, and a trainer never waits on a reader: it defers the
                          deletion to its next save.

Advisory locks bind only code that asks for them, which is every s2s-jax reader and writer.
On filesystems without flock (some network mounts) locking is skipped rather than failing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from s2s_jax.errors import UserError

PID_FILE = "train.pid"


def _open_dir(path: Path) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except FileNotFoundError:
        return None


def _flock(fd: int, how: int) -> bool:
    """True when the lock is held now; False when another process holds it (non-blocking `how` only)."""
    try:
        fcntl.flock(fd, how)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):  # no locking on this filesystem
            return True
        raise
    return True


def holder_pid(workdir: Path) -> int | None:
    """The PID in `train.pid`, if the file is there and readable."""
    try:
        return int((workdir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


class WorkdirOwner:
    """The training process's hold on a workdir (a context manager). `stale_pid`: the PID of a trainer that
    died holding it (its `train.pid` was left behind), for a log line."""

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.stale_pid: int | None = None
        self._fd: int | None = None

    def __enter__(self) -> WorkdirOwner:
        if self.workdir.exists() and not self.workdir.is_dir():
            raise UserError(f"workdir {self.workdir} exists and is not a directory")
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = _open_dir(self.workdir)
        if fd is None or not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
            if fd is not None:
                os.close(fd)
            pid = holder_pid(self.workdir)
            who = f"PID {pid}" if pid is not None else "another process"
            raise UserError(f"workdir {self.workdir} is in use by {who}, which is training it; wait for it to "
                            "finish (or stop it with Ctrl-C, which saves a checkpoint), or train in another "
                            "--workdir")
        self._fd = fd
        self.stale_pid = holder_pid(self.workdir)
        self._write_pid()
        return self

    def _write_pid(self) -> None:
        """`train.pid` says who holds the lock (removed on exit, so a refused run leaves the workdir as it was)."""
        tmp = self.workdir / (PID_FILE + ".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.workdir / PID_FILE)

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        if holder_pid(self.workdir) == os.getpid():
            with contextlib.suppress(OSError):
                (self.workdir / PID_FILE).unlink()
        os.close(self._fd)  # releases the lock
        self._fd = None


@contextlib.contextmanager
def reading_checkpoints(checkpoints: Path) -> Iterator[None]:
    """Hold off checkpoint deletion while a step is chosen and read (waits only for a deletion in progress)."""
    fd = _open_dir(checkpoints)
    if fd is None:
        yield
        return
    try:
        _flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def deleting_checkpoints(checkpoints: Path, *, wait: bool = False) -> Iterator[bool]:
    """Yields True when no reader is reading `checkpoints` and steps may be deleted now; False otherwise (unless
    `wait`, which blocks until the readers are done)."""
    fd = _open_dir(checkpoints)
    if fd is None:
        yield True
        return
    try:
        yield _flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
