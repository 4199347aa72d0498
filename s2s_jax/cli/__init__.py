"""`s2s-jax` command line: thin argparse verbs over `s2s_jax.run`.

Bad input (unknown preset or config key, missing workdir, malformed text, a flag value
argparse refuses, a size that does not fit in memory) is a one-line message on stderr and
exit code 2, never a traceback; Ctrl-C is one line and 130. This package is the only part
of s2s_jax that may load torch_ref or export, and it does so lazily, inside the verbs that
need them (`export`, `parity`, `import`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from s2s_jax.cli.cache import enable_compilation_cache
from s2s_jax.cli.parser import build_parser
from s2s_jax.errors import UserError

USAGE_ERROR = 2
COMPILING_VERBS = ("train", "translate", "evaluate")  # the verbs that jit-compile; see cli/cache.py
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

__all__ = ["USAGE_ERROR", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb in COMPILING_VERBS:
            enable_compilation_cache()
        return args.func(args)
    except UserError as e:  # ConfigError included
        from export.lines import one_line  # messages echo user input, which may hold line breaks

        print(f"s2s-jax {args.verb}: error: {one_line(e)}", file=sys.stderr)
        return USAGE_ERROR
    except BrokenPipeError:  # `s2s-jax translate ... | head`: the reader has gone, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except Exception as e:  # running out of memory is the size asked for, not a bug: say so in one line
        if not _out_of_memory(e):
            raise
        print(f"s2s-jax {args.verb}: error: out of memory ({type(e).__name__}); the model, batch or beam asked "
              "for does not fit in this machine: lower --batch-size, --beam or the model's sizes", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:  # Ctrl-C outside training (which saves and returns by itself)
        print(f"s2s-jax {args.verb}: interrupted", file=sys.stderr)
        return INTERRUPTED


def _out_of_memory(e: Exception) -> bool:
    """Python's MemoryError, or XLA's RESOURCE_EXHAUSTED (a device or host allocation that failed)."""
    return isinstance(e, MemoryError) or "RESOURCE_EXHAUSTED" in str(e)[:200]
