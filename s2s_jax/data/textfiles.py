"""Reading aligned text files strictly: every problem is a UserError naming the file and line.

Used by the TFDS builders (`multi30k`, `parallel_text`) before anything is written,
so bad input is refused up front rather than silently truncated, re-encoded or
misaligned (a missing line would shift every later pair).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from s2s_jax.errors import UserError


def read_lines(path: str | Path, *, allow_empty: bool = False, empty_fix: str = "remove the pair") -> list[str]:
    """Lines of a UTF-8 text file (gzip-compressed or not: told by its magic bytes), without line ends.

    Refuses: a missing file, bytes that are not UTF-8, and (unless `allow_empty`) empty or
    whitespace-only lines, naming file and line (`empty_fix` says what to do: a pair of parallel
    files loses the pair, a file to translate the line). A final newline does not make an extra line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw.startswith(b"\x1f\x8b"):  # downloaded files lose their .gz name, so look at the bytes
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark is not part of the first line
    chunks = raw.split(b"\n")
    if chunks and chunks[-1] == b"":
        chunks.pop()
    lines = []
    for number, chunk in enumerate(chunks, start=1):
        try:
            line = chunk.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as e:
            raise UserError(
                f"{path}:{number}: not UTF-8 (byte {chunk[e.start]:#04x} at column {e.start + 1}); "
                "convert the file to UTF-8, e.g. with iconv"
            ) from None
        if not allow_empty and not line.strip():
            raise UserError(f"{path}:{number}: empty line; every line must hold a sentence ({empty_fix})")
        lines.append(line)
    return lines


def read_parallel(src_path: str | Path, tgt_path: str | Path) -> list[tuple[str, str]]:
    """Aligned (source, target) pairs from two files of equally many lines."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise UserError(
            f"{src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}: parallel files must be aligned "
            f"line by line (first line past the shorter file: {min(len(src), len(tgt)) + 1})"
        )
    return list(zip(src, tgt, strict=True))


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """(source, target) pairs from a file of `source<TAB>target` lines."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise UserError(f"{path}:{number}: expected 2 tab-separated fields (source, target), got {len(fields)}")
        if not fields[0].strip() or not fields[1].strip():
            raise UserError(f"{path}:{number}: empty {'source' if not fields[0].strip() else 'target'} field")
        pairs.append((fields[0], fields[1]))
    return pairs
