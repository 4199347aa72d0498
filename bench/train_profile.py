"""Where a training step's time goes, JAX vs torch eager: the step cut into pieces, and per-op profiles of both.

    taskset -c 0 python bench/train_profile.py --threads 1 --presets bentrevett-lstm,bentrevett-transformer

Same models, sizes, batches and initial weights as bench/train_throughput.py (whose
`model_config`, `training_batches` and `TorchTrainer` it reuses), so its numbers
explain that script's ratios. Per preset it prints:

1. pieces, timed side by side (JAX and torch alternate, median of `--reps`, on the
   same cycle of batches): the whole train step; the forward pass with the loss
   (train mode: dropout on; torch builds its autograd graph, as in a step); forward +
   backward (gradients, no update); the optimizer alone (global-norm clipping + Adam +
   the parameter update) on fixed gradients. "rest" = step - (forward+backward) -
   optimizer: what the whole step saves or loses over its parts (XLA fuses the update
   into the step; torch has none to gain).
2. JAX per-HLO-op self times over `--trace-steps` steps, from a `jax.profiler` trace
   (XLA CPU's thunk executor records every thunk, those inside `while` bodies
   included), grouped by what the op is: a matmul (YNNPACK/oneDNN/Eigen dot), one
   in a loop body (the scan over time), the other fusions (elementwise, reductions,
   gathers, scatters), copies, and the loop's own bookkeeping; the top ops by self
   time follow, with the JAX source (`op_name`) each comes from.
3. torch's `torch.profiler` table of the same number of steps (self CPU time per aten op).

This is a diagnostic script, not a benchmark of record: tracing adds a little to every
op, so its per-op sums exceed the untraced step time; the pieces in table 1 are untraced.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import torch  # noqa: E402
import train_throughput as tt  # noqa: E402  (pins the process first when --threads is given)
from batches import multi30k_lengths, training_batches  # noqa: E402
from torch_train import MaskedLoss, TorchTrainer, to_torch  # noqa: E402

import torch_ref  # noqa: E402
from s2s_jax import build_model  # noqa: E402
from s2s_jax.data.batching import DEFAULT_BUCKETS  # noqa: E402
from s2s_jax.training.state import create_train_state  # noqa: E402
from s2s_jax.training.steps import (  # noqa: E402
    _logits,
    make_optimizer,
    make_train_step,
    masked_cross_entropy,
    target_mask,
)
from torch_ref.convert import flax_to_torch  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", default="bentrevett-lstm,bentrevett-transformer")
    p.add_argument("--size", choices=("half", "preset"), default="half")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--vocab", type=int, default=6000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--buckets", default="16,24,48")
    p.add_argument("--manual-dir", default=str(tt.REPO.parent / "shared" / "data" / "multi30k"))
    p.add_argument("--langs", default="de-en")
    p.add_argument("--reps", type=int, default=5, help="timed repeats of each piece (median); each is one cycle")
    p.add_argument("--trace-steps", type=int, default=4, help="steps under the JAX and torch profilers")
    p.add_argument("--top", type=int, default=20, help="ops listed per profile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="as in train_throughput.py: both frameworks on the first N cores")
    return p.parse_args(argv)


def interleaved(runners: dict[str, Callable[[], None]], reps: int) -> dict[str, float]:
    """Median seconds per call of each runner, the runners taking turns (load hits all alike); one warm-up each."""
    for run in runners.values():
        run()
    return tt.timed_rounds(runners, reps)


# --- JAX trace parsing -------------------------------------------------------------------------------------------

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+) = .*?metadata=\{([^}]*)\}")
_OP_NAME = re.compile(r'op_name="([^"]*)"')


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """Instruction name -> the JAX `op_name` its metadata records (for fusions: the root's)."""
    out = {}
    for line in hlo_text.splitlines():
        m = _INSTR.match(line)
        if m:
            o = _OP_NAME.search(m.group(2))
            if o:
                out[m.group(1)] = o.group(1)
    return out


def self_times(trace_dir: str, module_prefix: str) -> dict[str, float]:
    """HLO op -> summed self time (us) of its thunk events in the trace; a `while` keeps only its own overhead."""
    path = sorted(glob.glob(f"{trace_dir}/**/perfetto_trace.json.gz", recursive=True))[-1]
    with gzip.open(path) as f:
        data = json.load(f)
    events = data["traceEvents"] if isinstance(data, dict) else data
    ops = [e for e in events if e.get("ph") == "X" and str(e.get("args", {}).get("hlo_module", "")).startswith(
        module_prefix) and "hlo_op" in e.get("args", {})]
    ops.sort(key=lambda e: (e["tid"], e["ts"], -e["dur"]))
    total: dict[str, float] = collections.defaultdict(float)
    stack: list[dict] = []  # open events on this thread: children are subtracted from their parent
    for e in ops:
        while stack and (stack[-1]["tid"] != e["tid"] or e["ts"] >= stack[-1]["ts"] + stack[-1]["dur"]):
            stack.pop()
        total[e["args"]["hlo_op"]] += e["dur"]
        if stack:
            total[stack[-1]["args"]["hlo_op"]] -= e["dur"]
        stack.append(e)
    return dict(total)


def _phase(op_name: str) -> str:
    if "transpose(" in op_name:
        return "backward"
    if any(s in op_name for s in ("adam", "clip", "global_norm", "apply_updates")) or "jvp(" not in op_name:
        return "update/other"
    return "forward"


def _module(op_name: str) -> str:
    """The model part an op belongs to: the flax module path (its first two levels), or the loss."""
    parts = op_name.split("/")
    mods = [re.sub(r"^(jvp|transpose|vmap|checkpoint)\(|\)+$", "", p) for p in parts[1:]]
    mods = [m for m in mods if m and m not in ("jit(step)", "while", "body", "cond", "closed_call", "pjit")
            and not m.startswith("jit(")]
    names = [m for m in mods if not re.match(r"^[a-z_]+$", m) or m in ("encoder", "decoder", "out", "drop")]
    if not names:
        return "loss/optimizer (" + (mods[-1] if mods else "?") + ")"
    return "/".join(names[1:3]) if len(names) > 1 else names[0]


def _kind(op: str) -> str:
    if op.startswith(("ynn_fusion", "xnn_fusion", "onednn", "dot", "custom-call")) or "dot" in op:
        return "matmul"
    if op.startswith("while"):
        return "while (loop overhead)"
    if op.startswith("copy"):
        return "copy"
    if "scatter" in op:
        return "scatter"
    if "gather" in op:
        return "gather"
    if "reduce" in op:
        return "reduce fusion"
    return "elementwise fusion"


def jax_profile(compiled, state, batches: list[dict], steps: int) -> tuple[dict[str, float], dict[str, str]]:
    """Self time per HLO op (ms per step) of `steps` traced steps, and each op's JAX op_name."""
    with tempfile.TemporaryDirectory() as d:
        s = state
        for i in range(steps):  # outside the trace: warm
            s, _ = compiled[batches[i % len(batches)]["src"].shape[1]](s, batches[i % len(batches)])
        jax.block_until_ready(s)
        jax.profiler.start_trace(d, create_perfetto_trace=True)
        for i in range(steps):
            s, _ = compiled[batches[i % len(batches)]["src"].shape[1]](s, batches[i % len(batches)])
            jax.block_until_ready(s)
        jax.profiler.stop_trace()
        times = self_times(d, "jit_step")
    names: dict[str, str] = {}
    for c in compiled.values():
        names.update(hlo_op_names(c.as_text()))
    return {k: v / 1000.0 / steps for k, v in times.items()}, names


def print_jax_profile(times: dict[str, float], names: dict[str, str], top: int) -> None:
    total = sum(times.values())
    groups: dict[tuple[str, str, str], float] = collections.defaultdict(float)
    for op, ms in times.items():
        on = names.get(op, "")
        where = "in scan body" if "/while/" in on else "outside loops"
        groups[(_phase(on), _kind(op), where)] += ms
    print(f"\n  JAX per-op self time (traced), {total:.1f} ms/step in all:")
    print("  | phase | op kind | where | ms/step | share |\n  |---|---|---|---|---|")
    for (ph, kind, where), ms in sorted(groups.items(), key=lambda kv: -kv[1]):
        if ms >= 0.05:
            print(f"  | {ph} | {kind} | {where} | {ms:.2f} | {ms / total:.1%} |")
    by_mod: dict[tuple[str, str], float] = collections.defaultdict(float)
    for op, ms in times.items():
        on = names.get(op, "")
        by_mod[(_module(on), _phase(on))] += ms
    print("\n  | model part | phase | ms/step |\n  |---|---|---|")
    for (mod, ph), ms in sorted(by_mod.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  | {mod} | {ph} | {ms:.2f} |")
    print(f"\n  top {top} HLO ops:\n  | op | ms/step | op_name |\n  |---|---|---|")
    for op, ms in sorted(times.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  | {op} | {ms:.2f} | {names.get(op, '')[-110:]} |")


def torch_profile(trainer: TorchTrainer, batches: list[dict], steps: int, top: int) -> None:
    from torch.profiler import ProfilerActivity, profile, record_function

    for i in range(steps):
        trainer.step(batches[i % len(batches)])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            b = batches[i % len(batches)]
            trainer.opt.zero_grad(set_to_none=True)
            with record_function("## forward"):
                loss = trainer.loss(b["src"], b["src_lengths"], b["tgt_in"], b["tgt_out"], b["tgt_lengths"])
            with record_function("## backward"):
                loss.backward()
            with record_function("## optimizer"):
                torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.clip)
                trainer.opt.step()
    avg = prof.key_averages()
    rows = sorted(avg, key=lambda e: -e.self_cpu_time_total)
    print(f"\n  torch per-op self CPU time over {steps} steps (ms/step):")
    print("  | op | self ms/step | calls/step | total ms/step (incl. children) |\n  |---|---|---|---|")
    for e in rows[:top]:
        print(f"  | {e.key} | {e.self_cpu_time_total / 1000 / steps:.2f} | {e.count / steps:.0f} "
              f"| {e.cpu_time_total / 1000 / steps:.2f} |")
    for e in avg:
        if e.key.startswith("## "):
            print(f"  {e.key[3:]}: {e.cpu_time_total / 1000 / steps:.2f} ms/step (traced)")


def profile_preset(preset: str, args: argparse.Namespace, lengths: tuple[np.ndarray, np.ndarray]) -> None:
    cfg = tt.model_config(preset, args)
    buckets = DEFAULT_BUCKETS if args.buckets == "default" else tuple(int(b) for b in args.buckets.split(","))
    batches = training_batches(cfg, *lengths, batch_size=args.batch_size, n=args.batches, buckets=buckets,
                               seed=args.seed)
    model, tx = build_model(cfg), make_optimizer(tt.LR, tt.CLIP)
    state = create_train_state(model, cfg, tx, args.seed, batches[0])
    tmodel = torch_ref.build_model(cfg)
    tmodel.load_state_dict(flax_to_torch(cfg, state.params), strict=True)
    t_batches = [to_torch(b) for b in batches]
    j_batches = [{k: jnp.asarray(v) for k, v in b.items()} for b in batches]
    widths = {b["src"].shape[1]: i for i, b in reversed(list(enumerate(batches)))}
    print(f"\n## {preset}: {tt.describe(cfg)}, dropout {cfg.dropout}; batch widths "
          f"{[b['src'].shape[1] for b in batches]}", flush=True)

    # JAX pieces, each compiled per width.
    def loss_fn(params, batch, key):
        logits = _logits(model, params, batch, True, {"dropout": key}).astype(jnp.float32)
        total, n = masked_cross_entropy(logits, batch["tgt_out"], target_mask(batch))
        return total / jnp.maximum(n, 1.0)

    key = jax.random.key(1)
    fwd = jax.jit(loss_fn)
    fwd_bwd = jax.jit(jax.grad(loss_fn))

    def update(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    upd = jax.jit(update, donate_argnums=(1, 2))
    step = make_train_step(model, tx)
    compiled = {w: step.lower(state, j_batches[i]).compile() for w, i in widths.items()}
    params = jax.tree.map(jnp.copy, state.params)  # the step donates the state's own buffers
    grads = fwd_bwd(params, j_batches[0], key)
    holder = {"state": state, "opt": (jax.tree.map(jnp.copy, state.params), jax.tree.map(jnp.copy,
                                                                                        state.opt_state))}

    def j_step() -> None:
        s = holder["state"]
        for b in j_batches:
            s, _ = compiled[b["src"].shape[1]](s, b)
        holder["state"] = jax.block_until_ready(s)

    def j_fwd() -> None:
        jax.block_until_ready([fwd(params, b, key) for b in j_batches])

    def j_fwd_bwd() -> None:
        jax.block_until_ready([fwd_bwd(params, b, key) for b in j_batches])

    def j_upd() -> None:
        p, o = holder["opt"]
        for _ in j_batches:
            p, o = upd(grads, o, p)
        holder["opt"] = jax.block_until_ready((p, o))

    trainer = TorchTrainer(tmodel, tt.LR, tt.CLIP, compiled=False)
    t_loss = MaskedLoss(trainer.model)

    def t_step() -> None:
        for b in t_batches:
            trainer.step(b)

    def t_fwd() -> None:
        for b in t_batches:
            t_loss(**b)

    def t_fwd_bwd() -> None:
        for b in t_batches:
            trainer.opt.zero_grad(set_to_none=True)
            t_loss(**b).backward()

    def t_upd() -> None:
        for _ in t_batches:
            torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.clip)
            trainer.opt.step()

    n = len(batches)
    pieces = [("step", j_step, t_step), ("forward (+loss)", j_fwd, t_fwd), ("forward+backward", j_fwd_bwd, t_fwd_bwd),
              ("optimizer (clip+Adam+update)", j_upd, t_upd)]
    load0 = os.getloadavg()[0]
    sec = interleaved({f"{name}|{fw}": fn for name, jf, tf in pieces for fw, fn in (("JAX", jf), ("torch", tf))},
                      args.reps)
    ms = {k: 1000 * v / n for k, v in sec.items()}
    print(f"\n  pieces (ms per step, median of {args.reps}, load {load0:.1f} -> {os.getloadavg()[0]:.1f}):")
    print("  | piece | JAX ms | torch ms | JAX/torch time |\n  |---|---|---|---|")
    for name, _, _ in pieces:
        j, t = ms[f"{name}|JAX"], ms[f"{name}|torch"]
        print(f"  | {name} | {j:.1f} | {t:.1f} | {j / t:.2f} |")
    for fw in ("JAX", "torch"):
        rest = ms[f"step|{fw}"] - ms[f"forward+backward|{fw}"] - ms[f"optimizer (clip+Adam+update)|{fw}"]
        bwd = ms[f"forward+backward|{fw}"] - ms[f"forward (+loss)|{fw}"]
        print(f"  {fw}: backward alone (fwd+bwd - fwd) {bwd:.1f} ms, step - (fwd+bwd) - optimizer = {rest:+.1f} ms")

    times, names = jax_profile(compiled, holder["state"], j_batches, args.trace_steps)
    print_jax_profile(times, names, args.top)
    torch_profile(trainer, t_batches, args.trace_steps, args.top)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(tt.machine_line())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; cores {sorted(os.sched_getaffinity(0))}; "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    lengths = multi30k_lengths(args.manual_dir, *args.langs.split("-"))
    for p in args.presets.split(","):
        if p.strip():
            profile_preset(p.strip(), args, lengths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
