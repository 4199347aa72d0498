"""Training throughput: JAX vs torch_ref eager vs torch.compile, one preset per family, same weights and batches.

    python bench/train_throughput.py                      # the five bentrevett families at half width
    python bench/train_throughput.py --presets bentrevett-gru --size preset --batch-size 128
    python bench/train_throughput.py --steps 2 --rounds 1 --batches 2 --batch-size 8 --vocab 50 \
        --set emb_dim=16 --set hid_dim=16 --set ff_dim=32 --matmul-size 512  # smoke test: minutes, mostly compiling

Per preset, all three train on the same batches from the same initial weights
(Flax init, converted by torch_ref.convert; the initial eval losses are printed
to show it):
- JAX: the library's train step (`s2s_jax.training.steps`: masked cross-entropy,
  global-norm clipping, Adam, donated state), compiled ahead of time per batch
  width (`jit(...).lower(...).compile()`: the JAX compile column), timed with
  `block_until_ready`;
- torch eager: `torch_ref`'s model, the same loss, `clip_grad_norm_`, Adam;
- torch.compile: the same with model + loss under `torch.compile` (default mode);
  its column is the first step on each batch width, compilation included. A
  model torch cannot compile gets the error in its cells instead of numbers.
All run in train mode (dropout on). torch uses one thread per core unless
`--torch-threads` says otherwise; XLA uses all cores. `--threads N` gives both frameworks N: the
process is pinned to the first N cores (sched_setaffinity, before JAX starts: XLA sizes its
thread pool from the cores it may run on) and torch gets N intra-op threads, so `--threads 1` is
the one-core comparison without an outer `taskset`.

Batches: Multi30k's real sentence lengths (train, lc.norm.tok) cut by the
trainer's own bucketing, random token ids over `--vocab` (see bench/batches.py).
Sizes: `--size half` (default) halves the preset's widths (emb_dim, hid_dim,
ff_dim) and keeps its depth, so that with batch 32 a JAX step takes on the order
of 100-200 ms on two cores (printed per preset); `--size preset` is the bentrevett
size. `--set KEY=VALUE` overrides either.

Timing: `--rounds` rounds; in each, every framework runs `--steps` steps over the
batches in turn (interleaved, so background load hits all alike); the table
gives each framework's median round. FLOP/s: the step's matmul FLOPs counted
from its jaxpr (scans times their length; see bench/flops.py, which also
explains why XLA's own cost analysis, printed beside it, undercounts the RNNs)
over the JAX time, against the float32 matmul rate measured at the start.
This is a benchmark script, not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path


def _pin_threads(argv: list[str]) -> int | None:
    """`--threads N` acts before JAX and torch start: XLA reads the affinity mask once, when it creates its pool."""
    for i, a in enumerate(argv):
        value = a.split("=", 1)[1] if a.startswith("--threads=") else argv[i + 1] if a == "--threads" and \
            i + 1 < len(argv) else None
        if value is not None:
            n = int(value)
            cores = sorted(os.sched_getaffinity(0))[:n]
            os.sched_setaffinity(0, cores)
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                       f" --xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'}"
                                       f" intra_op_parallelism_threads={n}").strip()
            return n
    return None


PINNED = _pin_threads(sys.argv[1:])

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batches import multi30k_lengths, training_batches  # noqa: E402
from flops import matmul_flops, six_n_flops, xla_flops  # noqa: E402
from hardware import jax_matmul_gflops, machine_line, torch_matmul_gflops  # noqa: E402
from torch_train import MaskedLoss, TorchTrainer, to_torch  # noqa: E402

import torch_ref  # noqa: E402
from s2s_jax import build_model, presets  # noqa: E402
from s2s_jax.config import ModelConfig  # noqa: E402
from s2s_jax.data.batching import DEFAULT_BUCKETS  # noqa: E402
from s2s_jax.run.overrides import parse_model_sets  # noqa: E402
from s2s_jax.training.state import create_train_state  # noqa: E402
from s2s_jax.training.steps import make_eval_step, make_optimizer, make_train_step  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402

FAMILIES = ("bentrevett-lstm", "bentrevett-gru", "bentrevett-attention", "bentrevett-convs2s",
            "bentrevett-transformer")
WIDTHS = ("emb_dim", "hid_dim", "ff_dim")
FRAMEWORKS = ("JAX", "torch eager", "torch.compile")
LR, CLIP = 1e-3, 1.0
REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default=",".join(FAMILIES), help="comma-separated preset names")
    p.add_argument("--size", choices=("half", "preset"), default="half",
                   help="half: the preset's emb/hid/ff widths halved, depth kept; preset: its own sizes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--vocab", type=int, default=6000, help="source and target vocabulary size")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=4, help="distinct batches (the trainer's first of epoch 0)")
    p.add_argument("--buckets", default="16,24,48",
                   help="padded widths (default: those of the README's Multi30k run; 'default': the trainer's)")
    p.add_argument("--manual-dir", default=str(REPO.parent / "shared" / "data" / "multi30k"),
                   help="directory with Multi30k's train.lc.norm.tok.{de,en}[.gz] (sentence lengths)")
    p.add_argument("--langs", default="de-en", help="source-target languages whose lengths are used")
    p.add_argument("--steps", type=int, default=20, help="timed steps per framework per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                   help="torch intra-op threads (default: one per core, as XLA uses)")
    p.add_argument("--threads", type=int, help="both frameworks on the first N cores, torch with N threads")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n float32 matmul peak measurement")
    return p.parse_args(argv)


def model_config(preset: str, args: argparse.Namespace) -> ModelConfig:
    base = presets.get(preset)
    sizes = {k: max(1, getattr(base, k) // 2) for k in WIDTHS} if args.size == "half" else {}
    return presets.get(preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab,
                       **{**sizes, **parse_model_sets(args.set)})


def describe(cfg: ModelConfig) -> str:
    kind = {"rnn": cfg.cell, "attention": f"{cfg.cell}+{cfg.attention}"}.get(cfg.family, cfg.family)
    ff = f" ff {cfg.ff_dim}" if cfg.family == "transformer" else ""
    return f"{kind} emb {cfg.emb_dim} hid {cfg.hid_dim}{ff} x{cfg.n_layers}"


@dataclasses.dataclass
class Row:
    preset: str
    size: str
    params: int
    tokens_per_s: dict[str, float]  # framework -> median tokens/s
    compile_s: dict[str, float]
    errors: dict[str, str]
    flops_per_token: dict[str, float]  # "jaxpr", "xla", "6N"


def timed_rounds(runners: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds of each runner over `rounds` interleaved rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def short_error(e: BaseException) -> str:
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first[:100]}".replace("|", "/")


def bench_preset(preset: str, args: argparse.Namespace, lengths: tuple[np.ndarray, np.ndarray]) -> Row:
    cfg = model_config(preset, args)
    buckets = DEFAULT_BUCKETS if args.buckets == "default" else tuple(int(b) for b in args.buckets.split(","))
    batches = training_batches(cfg, *lengths, batch_size=args.batch_size, n=args.batches, buckets=buckets,
                               seed=args.seed)
    first_of_width = {b["src"].shape[1]: i for i, b in reversed(list(enumerate(batches)))}
    step_tokens = [int(b["tgt_lengths"].sum()) for b in batches]
    cycle = [i % len(batches) for i in range(args.steps)]
    tokens = sum(step_tokens[i] for i in cycle)

    model, tx = build_model(cfg), make_optimizer(LR, CLIP)
    state = create_train_state(model, cfg, tx, args.seed, batches[0])
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, state.params), strict=True)  # a copy, before the state is donated
    t_batches = [to_torch(b) for b in batches]
    j_batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]

    # Same weights, same batch: the deterministic losses agree before any timing means anything.
    ev = make_eval_step(model)(state.params, batches[0])
    with torch.no_grad():
        t_loss = float(MaskedLoss(tmodel.eval())(**t_batches[0]))
    j_loss = float(ev["loss_sum"] / ev["tokens"])

    step = make_train_step(model, tx)
    width_flops = {w: matmul_flops(step, state, j_batches[i]) for w, i in first_of_width.items()}
    start = time.perf_counter()
    compiled = {w: step.lower(state, j_batches[i]).compile() for w, i in first_of_width.items()}
    compile_s = {"JAX": time.perf_counter() - start}
    w0 = batches[0]["src"].shape[1]
    xla_per_token = xla_flops(compiled[w0]) / step_tokens[0]
    src_tokens = int(batches[0]["src_lengths"].sum())
    six_n, n_params = six_n_flops(state.params, src_tokens, step_tokens[0])

    holder = {"state": state}

    def run_jax() -> None:
        s = holder["state"]
        for i in cycle:
            s, _ = compiled[batches[i]["src"].shape[1]](s, j_batches[i])
        holder["state"] = jax.block_until_ready(s)

    trainers = {"torch eager": TorchTrainer(tmodel, LR, CLIP, compiled=False)}
    if not args.no_compile:
        trainers["torch.compile"] = TorchTrainer(tmodel, LR, CLIP, compiled=True)
    errors = {"torch.compile": "skipped (--no-compile)"} if args.no_compile else {}
    for name, trainer in list(trainers.items()):  # warm-up: one step per width (torch.compile compiles here)
        start = time.perf_counter()
        try:
            for i in first_of_width.values():
                trainer.step(t_batches[i])
        except Exception as e:  # noqa: BLE001 - a compile failure is a result to report, not a crash
            errors[name] = short_error(e)
            del trainers[name]
            continue
        compile_s[name] = time.perf_counter() - start
    run_jax()  # warm-up of the compiled executables

    def torch_runner(trainer: TorchTrainer) -> Callable[[], None]:
        def run() -> None:
            for i in cycle:
                trainer.step(t_batches[i])

        return run

    runners = {"JAX": run_jax, **{name: torch_runner(t) for name, t in trainers.items()}}
    seconds = timed_rounds(runners, args.rounds)
    per_token = sum(width_flops[batches[i]["src"].shape[1]] for i in cycle) / tokens
    print(f"  {preset}: {describe(cfg)}, dropout {cfg.dropout}, {n_params:,} params (embeddings excluded); "
          f"initial eval loss JAX {j_loss:.6f} torch {t_loss:.6f}; widths {sorted(first_of_width)} "
          f"(first batch {w0}); " + ", ".join(f"{n} {1000 * s / args.steps:.1f} ms/step" for n, s in seconds.items()),
          flush=True)
    return Row(preset, describe(cfg), n_params, {n: tokens / s for n, s in seconds.items()}, compile_s, errors,
               {"jaxpr": per_token, "xla": xla_per_token, "6N": six_n / step_tokens[0]})


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def tables(rows: list[Row], peak: float) -> str:
    head = ("| preset | size | JAX tok/s | torch eager tok/s | torch.compile tok/s | JAX/eager | JAX/compile "
            "| compile s (JAX / torch.compile) | JAX GFLOP/s | % of matmul peak |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        tps, jax_tps = r.tokens_per_s, r.tokens_per_s["JAX"]
        comp = r.errors.get("torch.compile")
        gflops = r.flops_per_token["jaxpr"] * jax_tps / 1e9
        compile_cell = f"{r.compile_s['JAX']:.1f} / " + ("-" if comp else f"{r.compile_s['torch.compile']:.1f}")
        comp_tps, comp_ratio = (comp, "-") if comp else (fmt(tps["torch.compile"]),
                                                         f"{jax_tps / tps['torch.compile']:.2f}x")
        lines.append(
            f"| {r.preset} | {r.size} | {fmt(jax_tps)} | {fmt(tps['torch eager'])} | {comp_tps} | "
            f"{jax_tps / tps['torch eager']:.2f}x | {comp_ratio} | {compile_cell} | {gflops:.1f} "
            f"| {gflops / peak:.1%} |")
    lines += ["", "| preset | params (no embeddings) | 6N MFLOP/token "
              "| XLA cost analysis MFLOP/token (loop bodies once) | jaxpr matmul MFLOP/token (used above) |",
              "|" + "---|" * 5]
    for r in rows:
        f = r.flops_per_token
        lines.append(f"| {r.preset} | {r.params:,} | {f['6N'] / 1e6:.2f} | {f['xla'] / 1e6:.2f} | "
                     f"{f['jaxpr'] / 1e6:.2f} |")
    return "\n".join(lines)


def verdict(rows: list[Row]) -> list[str]:
    out = []
    slower = [r.preset for r in rows if r.tokens_per_s["JAX"] < r.tokens_per_s["torch eager"]]
    out.append("JAX >= torch eager for every preset" if not slower else f"JAX slower than torch eager: {slower}")
    wins = [r.preset for r in rows if "torch.compile" in r.tokens_per_s
            and r.tokens_per_s["torch.compile"] > r.tokens_per_s["JAX"]]
    if wins:
        out.append(f"torch.compile faster than JAX: {wins}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or args.torch_threads)
    if args.threads and PINNED != args.threads:
        raise SystemExit("--threads must be given on the command line (it pins the process before JAX starts)")
    src_lang, tgt_lang = args.langs.split("-")
    lengths = multi30k_lengths(args.manual_dir, src_lang, tgt_lang)
    print(machine_line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; process on cores "
          f"{sorted(os.sched_getaffinity(0))}")
    jax_peak, torch_peak = jax_matmul_gflops(args.matmul_size), torch_matmul_gflops(args.matmul_size)
    peak = max(jax_peak, torch_peak)
    print(f"float32 matmul {args.matmul_size}^2: JAX {jax_peak:.1f} GFLOP/s, torch {torch_peak:.1f} GFLOP/s "
          f"(peak used: {peak:.1f})")
    print(f"batches: {args.batches} x {args.batch_size} Multi30k {args.langs} train length pairs "
          f"(mean {lengths[0].mean():.1f} / {lengths[1].mean():.1f} tokens + eos), buckets {args.buckets}, "
          f"vocab {args.vocab}; size {args.size} {' '.join(args.set)}; {args.rounds} rounds of {args.steps} steps")
    rows = [bench_preset(p.strip(), args, lengths) for p in args.presets.split(",") if p.strip()]
    print()
    print(tables(rows, peak))
    print()
    print("\n".join(verdict(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
