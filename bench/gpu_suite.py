"""Issue 16 on a GPU, one command: every family's training and decoding speed, JAX vs torch, with parity first.

Install on a CUDA 12 machine: torch from its CUDA index first (as the README installs the CPU build first; the
index's cuXY must suit the driver), then the project with the torch extra (torch_ref; `export`, the numpy search
loop the torch decoding runs in, is part of the package and needs nothing more here) and dev (pytest), then the
CUDA build of jax, which replaces the CPU jaxlib:

    python3 -m venv .venv && . .venv/bin/activate
    pip install torch --index-url https://download.pytorch.org/whl/cu126
    pip install -e '.[torch,dev]'
    pip install -U "jax[cuda12]"
    python bench/gpu_suite.py                      # sized for < 6 min on one H200 (not yet run on one)
    python bench/gpu_suite.py --tiny               # tiny widths, a few steps: the CPU smoke test (auto without a GPU)

Per family (presets bentrevett-lstm, -gru, -attention, -convs2s, -transformer at their own bentrevett widths,
`--vocab` tokens on both sides, the same initial weights everywhere: Flax init converted by torch_ref.convert):
1. parity at the highest matmul precision on both sides (`jax.default_matmul_precision("highest")`; torch
   `allow_tf32=False` for matmuls and cuDNN): eval-mode logits of one batch, max |JAX - torch_ref|;
2. training, fp32 and bf16: target tokens/s of the library's train step (JAX; bf16 = `make_train_step`'s
   compute_dtype, float32 params and loss), torch_ref eager and torch.compile (bench/torch_train.py: the same
   loss, clipping and Adam; bf16 = `torch.autocast`). The RNNs on the torch side are torch's own nn.LSTM / nn.GRU
   (cuDNN kernels, packed sequences) for the encoders and every decoder step; bentrevett-gru's textbook GRU is
   not used by these presets (reset_after=True). fp32 runs at the highest precision too (`--tf32` allows TF32
   on both sides). Batches: `--batch-size` rows of Multi30k's real sentence lengths (bench/batches.py; random
   lengths of the same mean when the files are missing) padded to one `--width`, so each framework compiles
   one shape; `--rounds` interleaved rounds of `--steps` steps after one warm-up step, median round;
3. decoding: batch `--decode-batch`, beam `--beam`, every hypothesis forced to `--decode-len` tokens (no eos,
   as bench/decode.py --forced: the work does not depend on random weights' outputs), JAX's jitted search vs
   torch_ref on the device driven by the numpy search (bench/torch_decode.py), target tokens/s and the share
   of sentences whose tokens agree.
FLOPs: the train step's matmul FLOPs from its jaxpr (bench/flops.py) per target token; % of peak divides the
achieved rate by the GPU's dense peak for the precision (`GPU_PEAKS`, from NVIDIA's data sheets), on CPU by a
measured float32 matmul. torch.compile's warm-up is skipped once `--budget-s` is spent, so the run ends in time.
This is a benchmark script, not a test (tests/bench/test_gpu_suite.py runs it with --tiny).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.5")  # leave half of the GPU to torch

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from batches import multi30k_lengths, training_batches  # noqa: E402
from flops import matmul_flops  # noqa: E402
from hardware import jax_matmul_gflops, machine_line  # noqa: E402
from torch_decode import torch_search  # noqa: E402
from torch_train import MaskedLoss, TorchTrainer, to_torch  # noqa: E402
from train_throughput import CLIP, FAMILIES, LR, REPO, describe, short_error, timed_rounds  # noqa: E402

import torch_ref  # noqa: E402
from s2s_jax import build_model, presets  # noqa: E402
from s2s_jax.backend import kernels  # noqa: E402
from s2s_jax.checks import logits_of  # noqa: E402
from s2s_jax.config import ModelConfig  # noqa: E402
from s2s_jax.decoding.search import decode_source  # noqa: E402
from s2s_jax.training.state import create_train_state  # noqa: E402
from s2s_jax.training.steps import make_optimizer, make_train_step  # noqa: E402
from torch_ref.convert import flax_to_torch  # noqa: E402

# Dense (no sparsity) peak TFLOP/s: NVIDIA's data sheets (H100 / H200 SXM: "H100 Tensor Core GPU" and "H200
# Tensor Core GPU" datasheets, whose 1,979 bf16 / 989 TF32 figures are with 2:4 sparsity; A100: "NVIDIA A100
# Tensor Core GPU" datasheet). fp32 is the non-tensor-core rate, the one "highest" precision runs at.
GPU_PEAKS = {  # name fragment (first match wins) -> {precision: TFLOP/s}
    "H100 PCIe": {"bf16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H200": {"bf16": 989.5, "tf32": 494.7, "fp32": 66.9},
    "H100": {"bf16": 989.5, "tf32": 494.7, "fp32": 66.9},
    "A100": {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5},
}
PRECISIONS = ("fp32", "bf16")
TINY = dict(emb_dim=16, hid_dim=16, ff_dim=32, n_heads=2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default=",".join(FAMILIES), help="comma-separated preset names")
    p.add_argument("--tiny", action="store_true", help="tiny widths and counts (default when no GPU is present)")
    p.add_argument("--vocab", type=int, help="source and target vocabulary (default 6000; tiny 50)")
    p.add_argument("--batch-size", type=int, help="training rows (default 128; tiny 8)")
    p.add_argument("--width", type=int, default=32, help="padded width of every batch (one compiled shape)")
    p.add_argument("--batches", type=int, default=4, help="distinct training batches")
    p.add_argument("--steps", type=int, help="timed steps per round (default 20; tiny 2)")
    p.add_argument("--rounds", type=int, help="interleaved rounds, median kept (default 3; tiny 1)")
    p.add_argument("--decode-batch", type=int, help="sentences decoded at once (default 64; tiny 4)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--decode-len", type=int, help="tokens every hypothesis decodes (default 24; tiny 6)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--tf32", action="store_true", help="fp32 columns with TF32 matmuls on both sides")
    p.add_argument("--budget-s", type=float, default=330.0, help="skip torch.compile warm-ups past this many s")
    p.add_argument("--manual-dir", default=str(REPO.parent / "shared" / "data" / "multi30k"))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.tiny = args.tiny or not torch.cuda.is_available() or jax.default_backend() != "gpu"  # CPU: tiny
    defaults = dict(vocab=(50, 6000), batch_size=(8, 128), steps=(2, 20), rounds=(1, 3), decode_batch=(4, 64),
                    decode_len=(6, 24))
    for name, (tiny, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, tiny if args.tiny else full)
    return args


def lengths_for(args: argparse.Namespace) -> tuple[tuple[np.ndarray, np.ndarray], str]:
    """Multi30k de-en train lengths that fit `--width`, or random ones of Multi30k's mean (13 / 13 tokens)."""
    try:
        src, tgt = multi30k_lengths(args.manual_dir, "de", "en")
        what = "Multi30k de-en train lengths"
    except SystemExit:
        rng = np.random.default_rng(args.seed)
        src, tgt = (np.clip(rng.normal(13, 4, 4096), 2, 40).astype(np.int64) for _ in range(2))
        what = f"random lengths ({args.manual_dir} has no Multi30k files)"
    fits = np.maximum(src + 1, tgt + 2) <= args.width  # eos on the source, bos/eos on the target
    return (src[fits], tgt[fits]), f"{what}, the {fits.mean():.1%} that fit width {args.width}"


def model_config(preset: str, args: argparse.Namespace) -> ModelConfig:
    base = presets.get(preset)
    tiny = {**TINY, "n_layers": min(base.n_layers, 2)} if args.tiny else {}
    return presets.get(preset, src_vocab_size=args.vocab, tgt_vocab_size=args.vocab, **tiny)


def torch_precision(highest: bool) -> None:
    """fp32 matmuls and cuDNN convolutions/RNNs without TF32 (highest) or with it."""
    torch.backends.cuda.matmul.allow_tf32 = not highest
    torch.backends.cudnn.allow_tf32 = not highest


def synced(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return run


def parity(cfg: ModelConfig, params, tmodel: torch.nn.Module, batch: dict[str, np.ndarray],
           device: torch.device) -> float:
    """max |JAX - torch_ref| of eval-mode logits, highest precision on both sides."""
    torch_precision(True)
    with jax.default_matmul_precision("highest"):
        j = logits_of(cfg, params, batch)
    t = to_torch(batch, device)
    with torch.inference_mode():
        out = tmodel.eval()(t["src"], t["src_lengths"], t["tgt_in"])
    out = out[0] if isinstance(out, tuple) else out
    return float(np.abs(out.float().cpu().numpy() - j).max())


def train_cells(cfg: ModelConfig, args: argparse.Namespace, batches: list[dict[str, np.ndarray]],
                tmodel: torch.nn.Module, device: torch.device, precision: str, deadline: float) -> dict:
    """{framework: tokens/s or error}, plus "flops/token" and "compile s", for one precision."""
    model, tx = build_model(cfg), make_optimizer(LR, CLIP)
    half = precision == "bf16"
    torch_precision(not args.tf32)
    state = create_train_state(model, cfg, tx, args.seed, batches[0])
    j_batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    t_batches = [to_torch(b, device) for b in batches]
    order = [i % len(batches) for i in range(args.steps)]
    tokens = sum(int(batches[i]["tgt_lengths"].sum()) for i in order)
    with jax.default_matmul_precision("tensorfloat32" if args.tf32 or half else "highest"):
        step = make_train_step(model, tx, compute_dtype=jnp.bfloat16 if half else None)
        flops = matmul_flops(step, state, j_batches[0]) / int(batches[0]["tgt_lengths"].sum())
        start = time.perf_counter()
        compiled = step.lower(state, j_batches[0]).compile()
    out: dict = {"flops/token": flops, "compile s": {"JAX": time.perf_counter() - start}}
    holder = {"state": state}

    def run_jax() -> None:
        s = holder["state"]
        for i in order:
            s, _ = compiled(s, j_batches[i])
        holder["state"] = jax.block_until_ready(s)

    runners = {"JAX": run_jax}
    dtype = torch.bfloat16 if half else None
    for name, is_compiled in (("torch eager", False), ("torch.compile", True)):
        if is_compiled and (args.no_compile or time.perf_counter() > deadline):
            out[name] = "skipped (--no-compile)" if args.no_compile else "skipped (--budget-s spent)"
            continue
        if is_compiled:  # each cell compiles afresh: compile time is its own, and an earlier cell's graphs
            torch._dynamo.reset()  # do not use up the recompile limit (the RNN step loop recompiles per shape)
        trainer = TorchTrainer(tmodel, LR, CLIP, compiled=is_compiled, dtype=dtype)
        start = time.perf_counter()
        try:
            synced(lambda t=trainer: t.step_async(t_batches[0]), device)()  # warm-up (torch.compile compiles)
        except Exception as e:  # noqa: BLE001 - a failure is a result to report, not a crash
            out[name] = short_error(e)
            continue
        out["compile s"][name] = time.perf_counter() - start
        runners[name] = synced(lambda t=trainer: [t.step_async(t_batches[i]) for i in order], device)
    run_jax()  # warm-up of the executable
    seconds = timed_rounds(runners, args.rounds)
    out.update({name: tokens / s for name, s in seconds.items()})
    return out


def decode_cells(cfg: ModelConfig, params, tmodel: torch.nn.Module, args: argparse.Namespace,
                 lengths: tuple[np.ndarray, np.ndarray], device: torch.device) -> dict:
    """Forced-length beam search of one batch: {"JAX", "torch": tokens/s, "same": share of equal rows}."""
    batch = training_batches(cfg, *lengths, batch_size=args.decode_batch, n=1, buckets=(args.width,),
                             seed=args.seed + 1)[0]
    src, src_lengths = batch["src"], batch["src_lengths"]
    model, n, never = build_model(cfg), args.decode_len, cfg.tgt_vocab_size  # an eos id no token has
    torch_precision(True)
    with jax.default_matmul_precision("highest"):
        search = jax.jit(lambda p, s, sl: decode_source(model, p, s, sl, max_len=n, beam=args.beam,
                                                        eos_id=never).tokens[:, 0])
        jax_tokens = np.asarray(search(params, src, src_lengths))  # compiles
        j_s = statistics.median(_seconds(lambda: search(params, src, src_lengths).block_until_ready())
                                for _ in range(args.rounds))
    t_src, t_len = (torch.from_numpy(a.astype(np.int64)).to(device) for a in (src, src_lengths))

    def run_torch():
        return torch_search(tmodel.eval(), t_src, t_len, beam=args.beam, max_len=n, bos_id=cfg.bos_id,
                            eos_id=never, pad_id=cfg.pad_id).tokens[:, 0]

    torch_tokens = run_torch()
    t_s = statistics.median(_seconds(run_torch) for _ in range(args.rounds))
    produced = len(src) * n
    same = float(np.mean([np.array_equal(a, b) for a, b in zip(jax_tokens, torch_tokens, strict=True)]))
    return {"JAX": produced / j_s, "torch": produced / t_s, "same": same}


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peaks(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, float], str]:
    """TFLOP/s per precision for the % of peak columns, and where they come from."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(0)
        for fragment, table in GPU_PEAKS.items():
            if fragment in name:
                fp32 = table["tf32"] if args.tf32 else table["fp32"]
                return {"fp32": fp32, "bf16": table["bf16"]}, f"{name}: NVIDIA data sheet, dense ({fragment})"
        return {}, f"{name}: not in GPU_PEAKS, no % of peak"
    measured = jax_matmul_gflops(256, reps=2) / 1000
    return {"fp32": measured}, f"CPU: measured float32 256^2 matmul {measured * 1000:.1f} GFLOP/s"


def _cell(x, ratio_to: float | None = None) -> str:
    if isinstance(x, str):
        return x
    return f"{ratio_to / x:.2f}x" if ratio_to is not None else f"{x:,.0f}"


def _pct(train: dict, tokens_per_s: float, peak_tflops: float | None) -> str:
    """Achieved matmul FLOP/s (the JAX step's count per token times tokens/s) as a share of the peak."""
    return f"{100 * train['flops/token'] * tokens_per_s / (peak_tflops * 1e12):.1f}%" if peak_tflops else "-"


def table(rows: list[dict], peak: dict[str, float]) -> str:
    head = ["preset", "precision", "parity max abs", "JAX tok/s", "eager tok/s", "compile tok/s", "JAX/eager",
            "JAX/compile", "JAX % peak", "best torch % peak", "compile s (JAX / torch.compile)",
            "decode JAX tok/s", "decode torch tok/s", "JAX/torch decode", "same tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        t, jax_tps = r["train"], r["train"]["JAX"]
        rates = [t[n] for n in ("torch eager", "torch.compile") if not isinstance(t[n], str)]
        pk = peak.get(r["precision"])
        comp = t["compile s"]
        cells = [r["preset"], r["precision"], f"{r['parity']:.1e}" if "parity" in r else "",
                 _cell(jax_tps), _cell(t["torch eager"]), _cell(t["torch.compile"]),
                 _cell(t["torch eager"], jax_tps), _cell(t["torch.compile"], jax_tps), _pct(t, jax_tps, pk),
                 _pct(t, max(rates), pk) if rates else "-",
                 f"{comp['JAX']:.1f} / " + (f"{comp['torch.compile']:.1f}" if "torch.compile" in comp else "-")]
        d = r.get("decode")
        cells += ([_cell(d["JAX"]), _cell(d["torch"]), f"{d['JAX'] / d['torch']:.2f}x", f"{d['same']:.0%}"]
                  if d else ["", "", "", ""])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    deadline = start + args.budget_s
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lengths, what = lengths_for(args)
    peak, peak_source = peaks(args, device)
    print(machine_line())
    print(f"torch {torch.__version__} on {device}; JAX on {jax.devices()[0].device_kind}, kernels {kernels()!r}; "
          f"{'tiny' if args.tiny else 'bentrevett'} widths, vocab {args.vocab}; train batch {args.batch_size} x "
          f"width {args.width} ({what}), {args.rounds} rounds of {args.steps} steps; decode batch "
          f"{args.decode_batch}, beam {args.beam}, {args.decode_len} tokens; peak: {peak_source}", flush=True)
    rows = []
    for preset in (p.strip() for p in args.presets.split(",") if p.strip()):
        cfg = model_config(preset, args)
        batches = training_batches(cfg, *lengths, batch_size=args.batch_size, n=args.batches,
                                   buckets=(args.width,), seed=args.seed)
        params = create_train_state(build_model(cfg), cfg, make_optimizer(LR, CLIP), args.seed, batches[0]).params
        tmodel = torch_ref.build_model(cfg).to(device)
        tmodel.load_state_dict(flax_to_torch(cfg, params), strict=True)
        err = parity(cfg, params, tmodel, batches[0], device)
        with torch.no_grad():
            loss = float(MaskedLoss(tmodel.eval())(**to_torch(batches[0], device)))
        print(f"  {preset}: {describe(cfg)}, parity max abs {err:.2e}, initial torch loss {loss:.4f}", flush=True)
        for precision in PRECISIONS:
            row = {"preset": preset, "precision": precision,
                   "train": train_cells(cfg, args, batches, tmodel, device, precision, deadline)}
            if precision == "fp32":
                row.update(parity=err, decode=decode_cells(cfg, params, tmodel, args, lengths, device))
            rows.append(row)
            print(f"    {precision} done at {time.perf_counter() - start:.0f} s", flush=True)
    print()
    print(table(rows, peak))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
