"""TensorBoard scalar event files, written without TensorFlow, tensorboardX or protobuf.

tensorboardX would do, but it imports torch when torch is installed, and s2s_jax
never imports torch; scalars need only a few bytes of protobuf, encoded by hand:

    file     TFRecords: uint64 length, masked crc32c(length), data, masked crc32c(data)
    Event    1: wall_time (double)  2: step (int64)  3: file_version (string)
             5: summary (Summary)   7: session_log (SessionLog)
    Summary  1: value (repeated Value);  Value 1: tag (string)  2: simple_value (float)
    SessionLog 1: status (enum, START = 1)

A START session log at step s makes TensorBoard drop the events at steps >= s that
an earlier writer left behind: that is how a resumed run's curves lose the steps
it redoes (tensorboardX calls it purge_step).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected


def _table() -> list[int]:
    out = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        out.append(c)
    return out


_TABLE = _table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int, *, scalars: dict[str, float] | None = None,
                 file_version: str | None = None, session_start: bool = False) -> bytes:
    """One serialized `Event` message."""
    out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        out += _bytes_field(5, values)
    if session_start:
        out += _bytes_field(7, _varint(1 << 3 | 0) + _varint(1))
    return out


def record(data: bytes) -> bytes:
    """TFRecord framing of one message."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", _masked_crc(length)) + data + struct.pack("<I", _masked_crc(data))


class EventWriter:
    """Appends scalar events to a new `events.out.tfevents.*` file in `directory`."""

    def __init__(self, directory: str | Path, purge_step: int | None = None) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}.s2s"
        self.path = directory / name
        self._f = open(self.path, "ab")  # noqa: SIM115 -- kept open for the run, closed in close()
        self._f.write(record(encode_event(time.time(), 0, file_version="brain.Event:2")))
        if purge_step is not None:
            self._f.write(record(encode_event(time.time(), purge_step, session_start=True)))
        self._f.flush()

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._f.write(record(encode_event(time.time(), step, scalars={tag: float(value)})))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
