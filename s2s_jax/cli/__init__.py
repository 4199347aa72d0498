"""`s2s-jax` command line: thin argparse verbs over `s2s_jax.run`.

Bad input (unknown preset or config key, missing workdir, malformed text) is a
one-line message on stderr and exit code 2, never a traceback. This package is the
only part of s2s_jax that may load torch_ref or export, and it does so lazily,
inside the verbs that need them (`export`, `parity`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from s2s_jax.cli.parser import build_parser
from s2s_jax.errors import UserError

USAGE_ERROR = 2

__all__ = ["USAGE_ERROR", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:  # ConfigError included
        print(f"s2s-jax {args.verb}: error: {e}", file=sys.stderr)
        return USAGE_ERROR

