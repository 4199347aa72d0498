"""Time to quality on Multi30k de->en: train each family under a wall-clock budget, report test_2016 BLEU.

    python bench/quality.py --minutes 60 [--presets bentrevett-transformer,...] [--root runs/quality]
    python bench/quality.py report ROOT/quality.json [ROOT2/quality.json ...]   # one table of several runs

Each model is trained through the real CLI (`s2s-jax train ... --minutes M --best-metric bleu`):
the budget covers everything the `train` process does (start-up, data preparation,
compilation, training, the periodic greedy validation BLEU, checkpoints). The
checkpoint with the best validation BLEU is kept, and `s2s-jax evaluate --checkpoint
best --beam 5` scores it on test_2016 with sacreBLEU (`tokenize='none'`: the
`lc.norm.tok` text is already tokenized). The table puts the bentrevett/pytorch-seq2seq
tutorial's test BLEU beside ours (their models, trained for 10 epochs on a GPU). The
`cores` column is the CPUs the run could use (`taskset -c 0 python bench/quality.py ...`
runs two models side by side on a 2-core machine, one core each).

The training settings below are ours, stated in full in the printed commands: the
tutorials' model sizes where a CPU hour allows them, otherwise reduced sizes (said so
in the table), Adam at a constant learning rate, batches of 128 sentences.
This is a benchmark script, not a test; it takes `len(presets) * (minutes + ~2)` minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cli_runs import machine  # noqa: E402

# bentrevett/pytorch-seq2seq README, test BLEU on Multi30k test_2016 (de->en, lowercased, spaCy-tokenized)
REFERENCE_BLEU = {
    "bentrevett-lstm": 13.8, "bentrevett-gru": 20.6, "bentrevett-attention": 28.3,
    "bentrevett-convs2s": 34.1, "bentrevett-transformer": 36.5,
}
DATA = ["--data", "multi30k:de-en:tok", "--tokenizer", "space", "--min-freq", "2", "--buckets", "16,24,48"]
COMMON = ["--batch-size", "128", "--schedule", "constant", "--steps", "1000000", "--best-metric", "bleu",
          "--keep", "1", "--no-progress"]
# per preset: (training flags, eval every N steps); --set overrides are model sizes that differ from the preset
SETTINGS: dict[str, tuple[list[str], int]] = {
    "bentrevett-lstm": (["--lr", "1e-3", "--set", "emb_dim=256", "--set", "hid_dim=256"], 400),
    "bentrevett-gru": (["--lr", "1e-3", "--set", "emb_dim=256", "--set", "hid_dim=256"], 400),
    "bentrevett-attention": (["--lr", "3e-3", "--set", "emb_dim=128", "--set", "hid_dim=128", "--set",
                              "dropout=0.2"], 500),
    # the tutorial's 10 layers of 512 channels cost ~6x the transformer per token: 6 layers of 256 instead
    "bentrevett-convs2s": (["--lr", "5e-4", "--set", "hid_dim=256", "--set", "n_layers=6"], 300),
    "bentrevett-transformer": (["--lr", "5e-4"], 300),
}
# runs named by a recipe (`--recipe`, config as data): (model preset, data flags, training flags, eval every N).
# The recipe sets the model sizes, the optimizer and the batches; --checkpoint-every 100 keeps the last 10
# checkpoints within the last 1,000 updates, as fairseq's per-epoch checkpoints are for Multi30k. multi30k-cpu
# keeps its recipe's 5,000 updates (its rate decays to 0 there), with --minutes as the bound.
RECIPE_RUNS: dict[str, tuple[str, list[str], list[str], int]] = {
    "multi30k-tiny": ("marian", ["--data", "multi30k:de-en:tok", "--tokenizer", "spm", "--spm-vocab-size", "10000",
                                 "--buckets", "12,16,24,32,48"],
                      ["--recipe", "multi30k-tiny", "--steps", "1000000", "--best-metric", "bleu",
                       "--checkpoint-every", "100", "--keep", "10", "--no-progress"], 500),
    "multi30k-cpu": ("marian", ["--data", "multi30k:de-en:tok", "--tokenizer", "spm", "--spm-vocab-size", "8000",
                                "--buckets", "12,16,20,24,32,48"],
                     ["--recipe", "multi30k-cpu", "--no-progress"], 500),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, required=True, help="wall-clock training budget per model")
    p.add_argument("--minutes-for", action="append", default=[], metavar="PRESET=M",
                   help="another budget for one preset, e.g. bentrevett-gru=10")
    p.add_argument("--presets", default=",".join(SETTINGS),
                   help="comma-separated, from: " + ", ".join([*SETTINGS, *RECIPE_RUNS]))
    p.add_argument("--root", default="runs/quality", help="one workdir per preset is created under it")
    p.add_argument("--manual-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "multi30k"),
                   help="the Multi30k files (default ../shared/data/multi30k)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--average", type=int, default=0, metavar="N",
                   help="also average the last N kept checkpoints (`s2s-jax average`) and score that on test_2016")
    p.add_argument("--eval-every", type=int, help="validation BLEU every N steps (default: per preset, see SETTINGS)")
    p.add_argument("--set", action="append", default=[], metavar="PRESET:KEY=VALUE",
                   help="extra model override for one preset, e.g. bentrevett-convs2s:n_layers=6")
    p.add_argument("--flags-for", action="append", default=[], metavar='PRESET="FLAGS"',
                   help='more `train` flags for one preset, after its own (so they win), e.g. '
                        'bentrevett-transformer="--label-smoothing 0.1 --ema-decay 0.999"')
    return p.parse_args(argv)


def budget(preset: str, args: argparse.Namespace) -> float:
    given = dict(item.split("=", 1) for item in args.minutes_for)
    return float(given.get(preset, args.minutes))


def train_command(name: str, workdir: Path, args: argparse.Namespace) -> list[str]:
    """The `s2s-jax train` command of one row: a bentrevett preset (SETTINGS) or a recipe run (RECIPE_RUNS)."""
    if name in RECIPE_RUNS:
        preset, data, flags, every = RECIPE_RUNS[name]
    else:
        (flags, every), preset, data = SETTINGS[name], name, DATA
        flags = [*COMMON, *flags]
    extra = [x for item in args.set if item.startswith(name + ":") for x in ("--set", item.split(":", 1)[1])]
    extra += [x for item in args.flags_for if item.split("=", 1)[0] == name for x in shlex.split(item.split("=", 1)[1])]
    return ["s2s-jax", "train", "--preset", preset, *data, "--manual-dir", args.manual_dir, *flags, *extra,
            "--eval-every", str(args.eval_every or every), "--minutes", f"{budget(name, args):g}",
            "--workdir", str(workdir)]


def run_cli(cmd: list[str], log: Path) -> str:
    """Run an `s2s-jax` command as `python -m s2s_jax.cli`, its output appended to `log`; return stdout."""
    print(f"running: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    with log.open("a") as f:
        f.write(f"$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.run([sys.executable, "-m", "s2s_jax.cli", *cmd[1:]], stdout=subprocess.PIPE, stderr=f,
                              text=True)
        f.write(proc.stdout)
    if proc.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}); see {log}")
    return proc.stdout


def one_model(preset: str, args: argparse.Namespace) -> dict:
    workdir = Path(args.root) / preset
    if workdir.exists():
        raise SystemExit(f"{workdir} exists: choose another --root or delete it")
    workdir.mkdir(parents=True)
    log = workdir.parent / f"{preset}.log"
    train = train_command(preset, workdir, args)
    cores = len(os.sched_getaffinity(0))  # before the run: what training could use
    start = time.perf_counter()
    run_cli(train, log)
    train_s = time.perf_counter() - start
    history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    evals = [h for h in history if "bleu" in h]
    best = max(evals, key=lambda h: h["bleu"])
    evaluate = ["s2s-jax", "evaluate", "--workdir", str(workdir), "--split", "test", "--checkpoint", "best",
                "--beam", str(args.beam)]
    result = json.loads(run_cli(evaluate, log).strip().splitlines()[-1])
    if result["step"] != best["step"]:
        raise SystemExit(f"{preset}: evaluate used step {result['step']}, the best validation BLEU is at "
                         f"{best['step']}")
    config = json.loads((workdir / "config.json").read_text())
    row = {
        "preset": preset, "reference_bleu": REFERENCE_BLEU.get(preset), "test_bleu": result["bleu"],
        "test_chrf": result["chrf"], "valid_bleu": best["bleu"], "best_step": best["step"],
        "steps": history[-1]["step"], "train_seconds": round(train_s), "params": _param_count(workdir),
        "sizes": _sizes(config["model"]), "minutes": budget(preset, args), "cores": cores,
        "target_tokens": _tokens_seen(workdir), "curve": [(h["step"], round(h["bleu"], 2)) for h in evals],
        "commands": [shlex.join(train), shlex.join(evaluate)],
    }
    # Other weights of the same run, each scored on validation too (greedy, as the best checkpoint was chosen),
    # so that which of them is the run's result is decided without test_2016.
    others = []
    if args.average:
        average = ["s2s-jax", "average", "--workdir", str(workdir), "--last", str(args.average)]
        run_cli(average, log)
        row["commands"].append(shlex.join(average))
        others.append("averaged")
    if config["optimizer"].get("ema_decay"):
        others.append("ema")
    for which in others:
        scores = {}
        for split, beam in (("validation", 1), ("test", args.beam)):
            cmd = ["s2s-jax", "evaluate", "--workdir", str(workdir), "--split", split, "--checkpoint", which,
                   "--beam", str(beam)]
            scores[split] = json.loads(run_cli(cmd, log).strip().splitlines()[-1])["bleu"]
            row["commands"].append(shlex.join(cmd))
        row[f"{which}_bleu"], row[f"{which}_valid_bleu"] = scores["test"], scores["validation"]
    return row


def _tokens_seen(workdir: Path) -> int:
    """Target tokens trained on, summed from train.jsonl (each record counts the tokens since the one before)."""
    path = workdir / "train.jsonl"
    if not path.exists():
        return 0
    return int(sum(json.loads(line).get("tokens", 0) for line in path.read_text().splitlines() if line.strip()))


def _param_count(workdir: Path) -> int:
    import jax

    from s2s_jax.run.workdir import load_run

    run = load_run(workdir, "best")
    return sum(int(x.size) for x in jax.tree.leaves(run.params))


def _sizes(model: dict) -> str:
    family_keys = {"transformer": ("n_heads", "ff_dim"), "marian": ("n_heads", "ff_dim"), "convs2s": ("kernel_size",)}
    keys = ("emb_dim", "hid_dim", "n_layers", *family_keys.get(model["family"], ()), "dropout")
    return ", ".join(f"{k} {model[k]}" for k in keys)


def markdown(rows: list[dict], beam: int) -> str:
    lines = [f"| preset | model | params | cores | budget | steps (best) | valid BLEU (greedy) "
             f"| test_2016 BLEU (beam {beam}) | chosen on validation | bentrevett test BLEU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = f"{r['reference_bleu']:.1f}" if r["reference_bleu"] is not None else "-"
        which, test = chosen(r)
        lines.append(f"| `{r['preset']}` | {r['sizes']} | {r['params'] / 1e6:.1f}M | {r['cores']} | "
                     f"{r['minutes']:g} min ({r['train_seconds'] / 60:.1f} min run) | "
                     f"{r['steps']:,} ({r['best_step']:,}) | {r['valid_bleu']:.2f} | {r['test_bleu']:.2f}"
                     f"{_averaged(r)} | {which}: **{test:.2f}** | {ref} |")
    return "\n".join(lines)


def _weights(row: dict) -> list[tuple[str, float, float]]:
    """(which, validation BLEU, test BLEU) of each set of weights the run scored: the best checkpoint first, then
    the averaged checkpoints and the EMA where the run has them."""
    scored = [("best", row["valid_bleu"], row["test_bleu"])]
    return scored + [(w, row[w + "_valid_bleu"], row[w + "_bleu"]) for w in ("averaged", "ema")
                     if row.get(w + "_bleu") is not None]


def chosen(row: dict) -> tuple[str, float]:
    """(which weights, their test BLEU) of the weights with the highest validation BLEU (greedy) among the best
    checkpoint, the averaged checkpoints and the EMA: the run's result, picked without looking at test_2016.
    A tie keeps the earlier of best, averaged, ema."""
    which, _, test = max(_weights(row), key=lambda s: s[1])
    return which, test


def _averaged(row: dict) -> str:
    """The other weights of the run: ` (averaged: test, valid v; ema: ...)`."""
    parts = [f"{w}: {test:.2f}, valid {valid:.2f}" for w, valid, test in _weights(row)[1:]]
    return f" ({'; '.join(parts)})" if parts else ""


def report(paths: list[str], beam: int) -> int:
    """One table from the quality.json files of several runs (e.g. two run side by side, one per core)."""
    rows = []
    for path in paths:
        for r in json.loads(Path(path).read_text()):
            workdir = Path(path).parent / r["preset"]
            rows.append({**r, "sizes": _sizes(json.loads((workdir / "config.json").read_text())["model"])})
    rows.sort(key=lambda r: [*SETTINGS, *RECIPE_RUNS].index(r["preset"]))
    print(markdown(rows, beam))
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "report":
        return report(argv[1:], beam=5)
    args = parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in SETTINGS and p not in RECIPE_RUNS]
    if unknown:
        raise SystemExit(f"unknown preset(s) {unknown}; choose from {', '.join([*SETTINGS, *RECIPE_RUNS])}")
    rows = []
    for preset in presets:
        rows.append(one_model(preset, args))
        Path(args.root, "quality.json").write_text(json.dumps(rows, indent=1) + "\n")
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("commands", "sizes")}), flush=True)
    print(f"\n{datetime.date.today()}, {machine()}\n")
    print(markdown(rows, args.beam))
    print("\ncommands:")
    for r in rows:
        for c in r["commands"]:
            print(f"    {c}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
