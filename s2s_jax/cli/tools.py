"""The verbs beside training and translation: `presets`, `export`, `parity`, `plot`.

`export` and `parity` are the only verbs that load torch (torch_ref, export), and only when called.
"""

from __future__ import annotations

import argparse
import json
import sys

from s2s_jax import presets
from s2s_jax.errors import UserError


def cmd_presets(args: argparse.Namespace) -> int:
    width = max(map(len, presets.names())) + 2
    for name in presets.names():
        p = presets.PRESETS[name]
        info = ", ".join(f"{k}={p[k]}" for k in ("family", "cell", "emb_dim", "hid_dim", "n_layers") if k in p)
        print(f"{name:<{width}} {info}")
    return 0


def quiet_torch_export() -> None:
    """torch.onnx's exporter warns, on every graph, that torchvision's detection ops cannot be registered (they
    are not used here), and torch's pytree that an internal class is deprecated: noise that hides real output."""
    import logging
    import warnings

    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*is deprecated", category=FutureWarning)


def cmd_export(args: argparse.Namespace) -> int:
    quiet_torch_export()
    if args.format == "ctranslate2":
        from export.ctranslate2_export import describe, export_workdir
    else:
        from export.onnx_export import describe, export_workdir

    if args.format == "ctranslate2":
        manifest = export_workdir(args.workdir, args.out, args.quantize, which=args.checkpoint)
    else:
        from export.onnx_export import STAGES
        from s2s_jax.training.logs import progress_bar

        stages = len(STAGES) - (args.quantize is None)
        with progress_bar(stages, "export", "stage") as bar:
            def tell(stage: str) -> None:
                bar.set_description(f"export: {stage}")
                bar.update(1)

            manifest = export_workdir(args.workdir, args.out, args.quantize, which=args.checkpoint, progress=tell)
    print(describe(manifest, args.out))
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    """Average checkpoints of a run (which may still be training) into WORKDIR/averaged."""
    from s2s_jax.cli.train import int_list
    from s2s_jax.run.weights import average_checkpoints
    from s2s_jax.run.workdir import load_run_config, load_task

    if args.last is not None and args.steps:
        raise UserError("give --last N or --steps A,B,..., not both")
    config = load_run_config(args.workdir)
    record = average_checkpoints(args.workdir, config, load_task(args.workdir, config), last=args.last,
                                 steps=int_list(args.steps) if args.steps else None)
    print(f"averaged steps {record['steps']} into {args.workdir}/averaged (use --checkpoint averaged)")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """Random padded inputs through Flax and torch_ref with the same weights; print the errors."""
    from s2s_jax.run.overrides import parse_model_sets
    from torch_ref.parity import parity_report

    overrides = {"src_vocab_size": 37, "tgt_vocab_size": 41, "dropout": 0.0, **parse_model_sets(args.set)}
    cfg = presets.get(args.preset, **overrides)
    try:
        report = parity_report(cfg, seed=args.seed)
    except AssertionError as e:
        print(f"s2s-jax parity: FAILED for {args.preset}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"preset": args.preset, **report}, indent=2))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from s2s_jax.plot_curves import plot_curves

    print(plot_curves(args.workdir, args.out))
    return 0
