"""`s2s-jax` command line: thin argparse verbs over the training, decoding and workdir modules.

Bad input (unknown preset or config key, missing workdir, malformed text) is a
one-line message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any

from s2s_jax import presets
from s2s_jax.config import ConfigError, ModelConfig, check_keys
from s2s_jax.errors import UserError

USAGE_ERROR = 2


def _parse_value(key: str, text: str, default: Any) -> Any:
    """Convert `text` to the type of the config field's default."""
    if isinstance(default, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ConfigError(f"--set {key}={text}: expected true or false")
    try:
        return type(default)(text)
    except ValueError:
        raise ConfigError(f"--set {key}={text}: expected {type(default).__name__}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """["hid_dim=64", "cell=lstm"] -> {"hid_dim": 64, "cell": "lstm"}, typed by ModelConfig's fields."""
    defaults = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected key=value")
        check_keys({key: None})
        out[key] = _parse_value(key, text, defaults[key])
    return out


def cmd_presets(args: argparse.Namespace) -> int:
    width = max(map(len, presets.names())) + 2
    for name in presets.names():
        p = presets.PRESETS[name]
        info = ", ".join(f"{k}={p[k]}" for k in ("family", "cell", "emb_dim", "hid_dim", "n_layers") if k in p)
        print(f"{name:<{width}} {info}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from s2s_jax.data.tasks import build_task
    from s2s_jax.training.loop import TrainConfig, config_for_task, train

    task = build_task(args.task, digits=args.digits, seed=args.seed)
    cfg = config_for_task(args.preset, task, parse_overrides(args.set))
    tc = TrainConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, eval_every=args.eval_every,
        schedule=args.schedule,
    )
    result = train(cfg, task, tc, workdir=args.workdir)
    print(f"held-out exact match {result.exact_match:.2%} after {tc.steps} steps ({result.seconds:.0f}s)")
    return 0


def _read_inputs(args: argparse.Namespace) -> list[str]:
    if args.inputs:
        return list(args.inputs)
    lines = [line.strip() for line in sys.stdin]
    return [line for line in lines if line]


def cmd_translate(args: argparse.Namespace) -> int:
    import numpy as np

    from s2s_jax.decoding.greedy import make_greedy_decoder
    from s2s_jax.models import build_model
    from s2s_jax.workdir import load_run

    run = load_run(args.workdir)
    texts = _read_inputs(args)
    if not texts:
        raise UserError("nothing to translate: give inputs as arguments or on stdin, one per line")
    src, src_lengths = run.task.encode_inputs(texts)  # validates every input before any decoding
    decoder = make_greedy_decoder(build_model(run.cfg), run.task.max_decode_len)
    tokens, _ = decoder(run.params, src, src_lengths)
    for row in np.asarray(tokens):
        print(run.task.decode_output(row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s2s-jax", description="Sequence-to-sequence models in JAX/Flax.")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("presets", help="list the named model configs")
    p.set_defaults(func=cmd_presets)

    p = verbs.add_parser("train", help="train a preset on a task and save the run in a workdir")
    p.add_argument("--preset", required=True, help="model preset (see `s2s-jax presets`)")
    p.add_argument("--task", default="addition", help="synthetic task (default: addition)")
    p.add_argument("--digits", type=int, default=2, help="operand digits for the addition task")
    p.add_argument("--workdir", required=True, help="new directory for config.json, vocab.json, checkpoints/")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--schedule", choices=("constant", "cosine"), default="cosine")
    p.add_argument("--seed", type=int, default=0, help="seeds parameters, dropout and the task's data split")
    p.add_argument("--eval-every", type=int, default=500, help="held-out greedy exact match every N steps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("translate", help="decode inputs greedily with a trained workdir")
    p.add_argument("--workdir", required=True)
    p.add_argument("inputs", nargs="*", help="inputs such as 12+35 (default: read stdin lines)")
    p.set_defaults(func=cmd_translate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UserError) as e:
        print(f"s2s-jax {args.verb}: error: {e}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
