"""Shared by the addition benchmarks: train through the real `s2s-jax` CLI, check with `translate`, tabulate.

Each run is a subprocess `python -m s2s_jax.cli train ...` into a fresh workdir, so
what the table reports is exactly what the printed command does. The held-out exact
match is read back from the run's metrics.jsonl (the training loop's final greedy
evaluation); `translate` then answers a few fixed problems as a spot check.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import jax

SPOT_CHECKS = {2: ["12+35", "99+99", "7+58", "0+0"], 4: ["1234+5678", "9999+9999", "42+7", "5050+4950"]}


@dataclasses.dataclass
class Result:
    preset: str
    args: list[str]
    exact_match: float
    seconds: float
    spot: str
    optimizer: str

    @property
    def steps(self) -> str:
        return self.args[self.args.index("--steps") + 1]

    @property
    def overrides(self) -> str:
        return " ".join(a for i, a in enumerate(self.args) if i and self.args[i - 1] == "--set") or "-"

    @property
    def command(self) -> str:
        return shlex.join(["s2s-jax", "train", "--preset", self.preset, "--workdir", "RUN", *self.args])


def train_and_check(preset: str, args: list[str], workdir: Path, digits: int, quiet: bool = True) -> Result:
    """Train `preset` with CLI `args` into `workdir`, then translate the spot-check problems with it."""
    cmd = [sys.executable, "-m", "s2s_jax.cli", "train", "--preset", preset, "--workdir", str(workdir), *args]
    start = time.perf_counter()
    print(f"running: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=quiet, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:] if quiet else ''}")
    history = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    problems = SPOT_CHECKS.get(digits, ["1+2"])
    out = subprocess.run([sys.executable, "-m", "s2s_jax.cli", "translate", "--workdir", str(workdir), *problems],
                         capture_output=True, text=True, check=True).stdout.split()
    right = sum(str(eval(p)) == o for p, o in zip(problems, out, strict=True))  # noqa: S307 - digits and '+' only
    spot = f"{right}/{len(problems)} ({', '.join(f'{p}={o}' for p, o in zip(problems, out, strict=True))})"
    return Result(preset, args, history[-1]["exact_match"], seconds, spot, _optimizer(workdir))


def _optimizer(workdir: Path) -> str:
    """The optimizer the run used, from its config.json (recipe defaults included), in a few words."""
    opt = json.loads((workdir / "config.json").read_text()).get("optimizer")
    if not opt:
        return "-"
    words = [f"{opt['name']} lr {opt['lr']:g}", opt["schedule"]]
    if opt.get("name") == "sgd":
        words[0] += f" (momentum {opt['momentum']:g}{', nesterov' if opt['nesterov'] else ''})"
    if opt.get("b2", 0.999) != 0.999:
        words[0] += f" (b2 {opt['b2']:g})"
    if opt.get("warmup_steps"):
        words.append(f"warmup {opt['warmup_steps']}")
    words.append(f"clip {opt['clip_norm']:g}")
    if opt.get("label_smoothing"):
        words.append(f"label smoothing {opt['label_smoothing']:g}")
    return ", ".join(words)


def markdown_table(results: list[Result], heldout: int) -> str:
    """One row per run. time: the whole `train` process (start-up, compilation, training, evaluations, saving)."""
    lines = [
        f"| preset | overrides | steps | optimizer | held-out exact match (of {heldout:,}) | time "
        "| translate spot check | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(f"| `{r.preset}` | `{r.overrides}` | {r.steps} | {r.optimizer} | {r.exact_match:.2%} | "
                     f"{r.seconds:.0f}s | {r.spot} | `{r.command}` |")
    return "\n".join(lines)


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {jax.default_backend()} backend, "
            f"jax {jax.__version__}, Python {platform.python_version()}")
